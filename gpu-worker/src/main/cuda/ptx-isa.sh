# Sourced by build-ptx.sh and bin/gpu-check: the PTX ISA every module the engine loads declares, and lower_isa.
# The PTX ISA every shipped module declares: 8.0, the first with sm_90a and wgmma, which drivers for CUDA 12.0 and
# later compile (the PTX ISA's release notes map each ISA to its CUDA release; CudaDevice reads the version back
# from the PTX and refuses older drivers by the same map). nvcc 13 writes ISA 9.0, which only drivers for CUDA 13
# (R580 and later) load, while clusters commonly run the R535, R550 and R570 drivers (CUDA 12.2 to 12.8). Each
# module is therefore declared at this ISA, and the one newer feature nvcc 13 writes, the `used_bytes_mask` pragma
# (ISA 8.3: a hint that a vector load uses only some of its bytes), is dropped. ptxas 13 compiles the lowered text
# to the same machine code, byte for byte, as nvcc's own (build-ptx.sh checks it whenever it regenerates a module),
# so nothing changes on a CUDA 13 driver; ptxas stops the build where the text needs a newer ISA than it declares.
PTX_ISA=8.0
# lower_isa <ptx>: declares the PTX at $PTX_ISA where nvcc wrote a newer ISA (an older one is kept).
lower_isa() {
  local v
  v=$(awk '$1 == ".version" { print $2; exit }' "$1")
  [[ -n "$v" ]] || { echo "lower_isa: $1 has no .version line" >&2; return 1; }
  awk -v v="$v" -v floor="$PTX_ISA" 'BEGIN { exit !(v + 0 > floor + 0) }' || return 0
  sed -i -e "s/^\.version $v\$/.version $PTX_ISA/" -e '/^[[:space:]]*\.pragma "used_bytes_mask [0-9]*";$/d' "$1"
}
