/* Prepended to every .cl file by backends/opencl/runtime.py.
 *
 * Storage vs arithmetic: tensors are stored as float (STORAGE_HALF=0) or as half
 * (STORAGE_HALF=1, read and written with vload_half / vstore_half, which need no cl_khr_fp16);
 * all arithmetic is float. Kernels read and write global tensors only through LOAD and STORE.
 */
#if STORAGE_HALF
typedef half storage_t;
#define LOAD(p, i) vload_half((i), (p))
#define STORE(p, i, v) vstore_half((v), (i), (p))
#else
typedef float storage_t;
#define LOAD(p, i) ((p)[(i)])
#define STORE(p, i, v) ((p)[(i)] = (v))
#endif
