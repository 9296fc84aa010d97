"""PyInstaller runtime hook: load llama.cpp's CPU backend from inside the bundle.

A portable llama-cpp-python (built with GGML_BACKEND_DL=ON and GGML_CPU_ALL_VARIANTS=ON)
has no CPU code in libggml itself: it ships one ``libggml-cpu-<variant>.so`` (``.dll`` on
Windows) per CPU level, and ``llama_backend_init()`` loads the best one for the CPU it runs
on. ggml looks for them in the executable's folder and the current folder
(``ggml_backend_load_best`` in ggml-backend-reg.cpp) - not in ``llama_cpp/lib`` where the
bundle keeps them. So, before any app code runs, this hook asks ggml to load the best
variant from there; ``llama_backend_init()`` then finds a backend and skips its own search.

A build with a built-in CPU backend (GGML_NATIVE, the developer venv) has no variants, and
this hook does nothing.

It leaves the chosen variant's name (``haswell``, ``sse42``, ...) in the environment as
``DECODELAB_GGML_CPU_BACKEND`` for the About box, and prints it to stderr when
``DECODELAB_REPORT_BACKEND`` is set (the package smoke test does).
"""

import ctypes
import glob
import os
import sys


def _variant_in_use(lib_dir):
    """The variant that stayed loaded (ggml unloads the ones it only scored)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                name = os.path.basename(line.rstrip().split(" ")[-1])
                if name.startswith("libggml-cpu-") and ".so" in name:
                    return name[len("libggml-cpu-"):].split(".so")[0]
    except OSError:  # not Linux: we only know that one was loaded
        pass
    return "loaded"


def _load_cpu_backend():
    lib_dir = os.path.join(getattr(sys, "_MEIPASS", ""), "llama_cpp", "lib")
    if sys.platform == "win32":
        variants, ggml_name = glob.glob(os.path.join(lib_dir, "ggml-cpu-*.dll")), "ggml.dll"
    else:
        ggml_name = "libggml.dylib" if sys.platform == "darwin" else "libggml.so"
        variants = glob.glob(os.path.join(lib_dir, "libggml-cpu-*.so"))
    if not variants:  # a native build: the CPU backend is linked into libggml
        _report("built-in", lib_dir)
        return
    ggml = ctypes.CDLL(os.path.join(lib_dir, ggml_name))
    ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_load_all_from_path.restype = None
    ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    log_callback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    ggml.ggml_log_set.argtypes = [log_callback, ctypes.c_void_p]
    ggml.ggml_log_set.restype = None
    quiet = log_callback(lambda level, text, user_data: None)
    # ggml says "load_backend: loaded CPU backend from ..." on stderr: not on every command.
    ggml.ggml_log_set(quiet, None)
    try:
        ggml.ggml_backend_load_all_from_path(os.fsencode(lib_dir))
    finally:
        ggml.ggml_log_set(log_callback(), None)  # NULL: ggml's default until the app sets its own
    _report(_variant_in_use(lib_dir) if ggml.ggml_backend_reg_count() else "none", lib_dir)


def _report(variant, lib_dir):
    os.environ["DECODELAB_GGML_CPU_BACKEND"] = variant
    if os.environ.get("DECODELAB_REPORT_BACKEND"):
        print(f"decodelab: ggml CPU backend: {variant} (in {lib_dir})", file=sys.stderr)


try:
    _load_cpu_backend()
except Exception as exc:  # never stop the app here: llama.cpp then says what is missing
    os.environ["DECODELAB_GGML_CPU_BACKEND"] = "none"
    print(f"decodelab: could not load llama.cpp's CPU backend: {exc}", file=sys.stderr)
