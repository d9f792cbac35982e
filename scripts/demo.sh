#!/usr/bin/env bash
# `make demo`: a short simulated Xspress3 acquisition into ./demo-out/, written to HDF5 and
# streamed at the same time, then a look at what was written.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
OUT=demo-out

mkdir -p "$OUT"
echo "== xsp3-acquire: 20000 frames of 4 channels x 4096 bins, 100 us exposure, simulated SDK"
"$BIN/xsp3-acquire" run --frames 20000 --exposure 100us --channels 4 \
    --out "$OUT" --file demo --overwrite --monitor tcp://127.0.0.1:19998
echo
echo "== the file (h5ls):"
h5ls -r "$OUT/demo.h5" | sed 's/^/   /'
echo
echo "Open it with h5py: h5py.File('$OUT/demo.h5')['entry/instrument/xspress3/data']"
echo "Run again with --stream tcp://127.0.0.1:9999 and receive with xsp3-receive or pyzmq;"
echo "docs/protocol.md describes the wire format, docs/file-formats.md the file."
