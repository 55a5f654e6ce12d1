#!/usr/bin/env python3
"""Rewrites a kernels/*.cu file, as it is now, into host C++ for the emulator (emu.h).

    extract.py kernels/gpu_layernorm.cu out.cpp

The whole file is kept (device helpers, kernels and launchers), so the test
calls the real launchers with their real grids. The rewrite:
  - __global__ / __device__ / __launch_bounds__(..) dropped, __forceinline__ -> inline;
  - threadIdx, blockIdx, blockDim, gridDim and the intrinsics in INTRINSICS -> emu::...;
  - `extern __shared__ T a[];` -> a pointer to the block's dynamic shared memory,
    `__shared__ T a[N];` -> a reference to this block's copy of that array;
  - `kernel<<<grid, block[, smem[, stream]]>>>(args)` -> emu::launch("kernel", [=] { kernel(args); }, grid, block, ...)
    (by value: an emulated runtime may record the launch in a graph and run it later);
  - the file's __global__ functions are registered, so that the test can fail on one it never launched.
  - a local `#include "x.cuh"` (kernels/' shared device helpers) is pasted in first, so that its
    device functions get the same rewrite as the file's own.
  - the inline-PTX helpers named in ASM_HELPERS (mma.sync, ldmatrix in gpu_flash.cu) get bodies that
    call emu.h's warp collectives; the helper must be found with the expected parameters.
Anything device-only that the emulator does not provide (other inline asm, other
intrinsics) stops the build with its name, instead of being silently wrong.
"""
import os
import re
import sys

BUILTINS = ['threadIdx', 'blockIdx', 'blockDim', 'gridDim', 'warpSize']
INTRINSICS = ['__syncthreads', '__syncwarp', '__shfl_sync', '__shfl_xor_sync', '__shfl_down_sync',
              '__shfl_up_sync', 'atomicAdd', '__ldg', 'rsqrtf', '__fmul_rn', '__fadd_rn', '__fsub_rn',
              '__fdiv_rn', '__fsqrt_rn', '__fmaf_rn', 'min', 'max']
# device-only names the emulator lacks: fail loudly if a kernel starts using one
UNSUPPORTED = r'\basm\b|\b__(?:ballot|any|all|match|activemask|reduce_\w+)_sync\b|\b__threadfence\w*|' \
              r'\batomic(?!Add\b)\w+|\b__(?:popc|clz|ffs|brev|byte_perm|funnelshift\w*)\b|\bcooperative_groups\b|' \
              r'\b__[a-z0-9]+_r[zud]\b|\b__(?:expf|logf|sinf|cosf|powf|fdividef|saturatef)\b|' \
              r'\b__constant__\b|\b__managed__\b|\btex\w*D\b|\bsurf\w*D\b|\bclock(?:64)?\s*\('

# Inline-PTX helpers whose bodies are replaced with the emulator's warp collectives: name ->
# (their exact parameter list, the body's replacement). A file with inline asm must define each
# helper it calls by name with that parameter list; any asm left after the substitution fails.
ASM_HELPERS = {
    'mma_bf16': ('float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1',
                 'emu::mma_m16n8k16_bf16(c, a, b0, b1);'),
    'ldsm_x4_trans': ('uint32_t (&r)[4], const __nv_bfloat16 *p',
                      'emu::ldmatrix_x4_trans(r, p);'),
}


def fail(msg):
    sys.exit('extract.py: ' + msg)


def strip_comments(s):
    # keep line structure (so compiler messages point near the right lines) and string literals
    out, i, n = [], 0, len(s)
    while i < n:
        if s.startswith('/*', i):
            j = s.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', s[i:j]))
            i = j
        elif s.startswith('//', i):
            j = s.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif s[i] in '"\'':
            q, j = s[i], i + 1
            while j < n and s[j] != q:
                j += 2 if s[j] == '\\' else 1
            out.append(s[i:j + 1])
            i = j + 1
        else:
            out.append(s[i])
            i += 1
    return ''.join(out)


def close_paren(s, i):
    """index just past the parenthesis matching the one at s[i]"""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == '(':
            depth += 1
        elif s[j] == ')':
            depth -= 1
            if depth == 0:
                return j + 1
    fail('unbalanced parentheses after offset %d' % i)


def rewrite_launches(s):
    out, pos, n = [], 0, 0
    for m in re.finditer(r'([A-Za-z_]\w*(?:\s*<[^<>;()]*(?:<[^<>;()]*>[^<>;()]*)*>)?)\s*<<<(.*?)>>>\s*\(', s, re.S):
        if m.start() < pos:
            fail('nested launch near offset %d' % m.start())
        end = close_paren(s, m.end() - 1)
        args = s[m.end():end - 1]
        out.append(s[pos:m.start()])
        lost = s[m.start():end].count('\n') - args.count('\n') - m.group(2).count('\n')
        name = re.match(r'\w+', m.group(1)).group(0)
        out.append('emu::launch("%s", [=] { %s(%s); }, %s)' % (name, m.group(1), args, m.group(2)) + '\n' * lost)
        pos = end
        n += 1
    out.append(s[pos:])
    return ''.join(out), n


def rewrite_shared(s):
    s = re.sub(r'extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s*)?([\w:]+)\s+(\w+)\s*\[\s*\]\s*;',
               r'\1 *\2 = (\1 *) emu::dyn_shared();', s)
    counter = [0]

    def static(m):
        counter[0] += 1
        align, typ, name, dims = m.group(1), m.group(2), m.group(3), m.group(4)
        key = 'emu_shared_key_%d' % counter[0]
        al = align or 'alignof(%s)' % typ
        return ('static char %s; %s (&%s)%s = *(%s (*)%s) emu::static_shared(&%s, sizeof(%s%s), %s);'
                % (key, typ, name, dims, typ, dims, key, typ, dims, al))
    s = re.sub(r'__shared__\s+(?:__align__\(\s*(\d+)\s*\)\s*)?([\w:]+)\s+(\w+)\s*((?:\[[^\]]+\])+)\s*;', static, s)
    if re.search(r'\b__shared__\b', s):
        fail('a __shared__ declaration this script does not understand: '
             + s[s.index('__shared__'):][:80].split('\n')[0])
    return s


def replace_asm_helpers(s, src):
    """the bodies of ASM_HELPERS' functions -> calls to the emulated collectives"""
    if not re.search(r'\basm\b', s):
        return s, 0
    n = 0
    for name, (params, body) in ASM_HELPERS.items():
        if not re.search(r'\b%s\s*\(' % name, s):
            continue
        m = re.search(r'__device__\s+__forceinline__\s+void\s+%s\s*\(' % name, s)
        if not m:
            fail('%s calls %s, but its definition (__device__ __forceinline__ void %s(...)) is not found'
                 % (src, name, name))
        end = close_paren(s, m.end() - 1)
        got = ' '.join(s[m.end():end - 1].split())
        if got != params:
            fail('%s: %s(%s) no longer has the parameters (%s) its emulation expects' % (src, name, got, params))
        b = re.match(r'\s*\{', s[end:])
        if not b:
            fail('%s: no body after %s(...)' % (src, name))
        start = end + b.end() - 1
        depth = 0
        for j in range(start, len(s)):
            depth += {'{': 1, '}': -1}.get(s[j], 0)
            if depth == 0:
                break
        else:
            fail('%s: unbalanced braces in %s' % (src, name))
        old = s[start:j + 1]
        s = s[:start] + '{ ' + body + ' }' + '\n' * old.count('\n') + s[j + 1:]
        n += 1
    if n == 0:
        fail('%s uses inline asm, but defines none of the helpers extract.py emulates (%s)'
             % (src, ', '.join(ASM_HELPERS)))
    return s, n


def paste_cuh_includes(src):
    """the file's text with each `#include "x.cuh"` replaced by x.cuh (next to src), #line-marked"""
    out = []
    for n, line in enumerate(open(src).read().split('\n'), 1):
        m = re.match(r'\s*#\s*include\s+"([^"]+\.cuh)"', line)
        if m:
            inc = os.path.join(os.path.dirname(src), m.group(1))
            if not os.path.exists(inc):
                fail('%s includes %s, which is not there' % (src, inc))
            line = '#line 1 "%s"\n%s\n#line %d "%s"' % (inc, open(inc).read(), n + 1, src)
        out.append(line)
    return '\n'.join(out)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    s = strip_comments(paste_cuh_includes(src))
    s, helpers = replace_asm_helpers(s, src)
    bad = sorted(set(m.group(0) for m in re.finditer(UNSUPPORTED, s)))
    if bad:
        fail('%s uses %s, which the emulator does not provide (add it to test/gpu/emu/emu.h)' % (src, ', '.join(bad)))
    s, launches = rewrite_launches(s)
    if '<<<' in s:
        fail('a kernel launch this script does not understand in ' + src)
    s = rewrite_shared(s)
    # a kernel template's specialization as cudaFuncGetAttributes' const void * (the host overload)
    s = re.sub(r'\bcudaFuncGetAttributes\(([^,()]+),\s*(\w+\s*<[^<>()]*>)\s*\)',
               r'cudaFuncGetAttributes(\1, reinterpret_cast<const void *>(&\2))', s)
    s = re.sub(r'__launch_bounds__\s*\([^)]*\)', '', s)
    s = re.sub(r'\b__global__\b', '', s)
    s = re.sub(r'\b__device__\b', '', s)
    s = re.sub(r'\b__forceinline__\b', 'inline', s)
    s = re.sub(r'\b__noinline__\b', '', s)
    for name in BUILTINS:
        s = re.sub(r'(?<![\w.:>])%s\b' % name, 'emu::' + name, s)
    for name in INTRINSICS:
        s = re.sub(r'(?<![\w.:>])%s(?=\s*[(<])' % name, 'emu::' + name, s)
    kernels = re.findall(r'\b__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(',
                         strip_comments(open(src).read()))
    if len(kernels) != len(re.findall(r'\b__global__\b', strip_comments(open(src).read()))):
        fail('a __global__ function this script does not understand in ' + src)
    with open(dst, 'w') as f:
        f.write('/* generated from %s by test/gpu/emu/extract.py: %d kernels, %d launches */\n'
                '#include "emu.h"\n#line 1 "%s"\n' % (src, len(kernels), launches, src))
        f.write(s)
        # the test fails when one of these is never launched
        f.write('\nstatic emu::Kernels emu_kernels_of_this_file("%s", {%s});\n'
                % (src, ', '.join('"%s"' % k for k in kernels)))


main()
