"""The deprecated tracks, reproduced on the user's own model (issue 15).

``plan`` says which track is reproduced how and what the study and the papers reported;
``layercut`` derives a self-draft from the target's first blocks; ``layerskip`` runs it as a
Track 1 draft at several depths; ``ssm`` speculates on a recurrent model with the naive
rollback and with snapshot-and-replay; ``heads`` looks for EAGLE/Medusa heads in the file;
``result`` holds what came out, as JSON, and ``store`` keeps it. Import the modules
themselves: this package imports nothing, so reading a result never loads llama.cpp.
"""
