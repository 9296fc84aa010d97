"""Qt-free core of DecodeLab: inspection, compatibility, tracks, engine, runs, models."""
