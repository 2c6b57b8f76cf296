#!/bin/bash
# The link of a CUDA build, checked where LibTorch is CPU-only: every frcnn symbol that the CUDA
# glue and the GPU tests (compiled, not linked, into GLUE) use must be defined by the glue itself,
# by the CUDA kernels (KERNELS, compiled by nvcc) or by libfrcnn (LIBFRCNN), so that a declared but
# never defined function fails this build and not only a GPU machine's link.
# Usage: test_glue_symbols.sh GLUE.a LIBFRCNN.so KERNELS.a...
set -euo pipefail
glue=$1
libfrcnn=$2
shift 2

used=$(nm -C --undefined-only "$glue" | sed -n 's/^ *U //p' | grep 'frcnn::' | sort -u)
# "ADDRESS TYPE NAME": the demangled name may hold spaces.
defined=$({ nm -C --defined-only "$glue" "$@"; nm -DC --defined-only "$libfrcnn"; } |
	sed -n 's/^[0-9a-f]\{8,\} [A-Za-z] //p' | sort -u)
count=$(printf '%s\n' "$used" | grep -c . || true)
if [ "$count" -lt 10 ]; then
	echo "FAIL: only $count frcnn symbols used by $glue: the check read nothing"
	exit 1
fi
missing=$(comm -23 <(printf '%s\n' "$used") <(printf '%s\n' "$defined"))
if [ -n "$missing" ]; then
	echo "FAIL: used by the CUDA glue or the GPU tests but defined nowhere:"
	printf '%s\n' "$missing"
	exit 1
fi
echo "all $count frcnn symbols that the CUDA glue and the GPU tests use are defined"
