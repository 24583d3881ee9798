"""Replace faiss-gpu 1.15.1's CUDA 12 preload (nvidia-*-cu12 wheels) with a cuBLAS 13 one."""
import sys

path = sys.argv[1]
src = open(path).read()
start = src.index("    else:\n        # CUDA 12 per-component layout")
end = src.index("        return  # faiss-gpu (non-cuVS) build: base CUDA preload is sufficient.\n")
new = '''    else:
        # Patched for personalize's GPU check (.gpu/README.txt): libfaiss.so was
        # retargeted from cuBLAS 12 to cuBLAS 13 and keeps only sm_90 kernels;
        # libcudart.so.12 ships in faiss_gpu.libs (found through libfaiss.so's
        # RPATH). cuBLAS 13 comes from the CUDA 13 nvidia-cublas wheel (nvidia/cu13/lib,
        # as torch cu130 installs it), else from the ld.so search path (LD_LIBRARY_PATH).
        try:
            import nvidia.cu13 as _cu13

            _dirs = [os.path.join(p, "lib") for p in _cu13.__path__]
        except ImportError:
            _dirs = []
        for _soname in ("libcublasLt.so.13", "libcublas.so.13"):
            _found = [os.path.join(d, _soname) for d in _dirs if os.path.exists(os.path.join(d, _soname))]
            _load(_found[0] if _found else _soname)
'''
src = src[:start] + new + src[end:]
open(path, "w").write(src)
print(f"{path}: CUDA 12 preload replaced by the cuBLAS 13 one")
