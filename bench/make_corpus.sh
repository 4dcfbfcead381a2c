#!/usr/bin/env bash
# Build the 100k-document real-text benchmark corpus (see bench/corpus.md).
#
# Uses the shared read-only tool /work/shared/tools/bench-corpus (override with BENCH_CORPUS_TOOL):
# it is copied to a scratch dir (it writes data/ beside itself), run there, and its outputs are copied to
# bench/data/ (git-ignored):
#   corpus_100k.parquet   (id, text)      100,000 docs, id == row index
#   meta_100k.parquet     planting details (page, chunk, planted_from, edit_rate, trunc)
#   gt_pairs_100k.tsv     exact Jaccard ground truth, all pairs with J >= 0.5 (i, j, J, |A&B|, |A|, |B|)
#   corpus_100k.jsonl     JSONL copy, one {"id": ..., "text": ...} per line, same order
#
# Needs: root (apt-get), network access to a Debian mirror, cargo (Rust), the project venv.
# Env: PY (python, default .venv/bin/python), WORKERS (default 2), WORK (scratch, default /tmp/bench-corpus),
#      SKIP_APT=1 to skip the apt step, N (docs, default 100000), NAME (default 100k), SEED (default 1),
#      FORCE=1 to rebuild the corpus even when bench/data/ already has it (the JSONL copy is always rewritten).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOL="${BENCH_CORPUS_TOOL:-/work/shared/tools/bench-corpus}"
WORK="${WORK:-/tmp/bench-corpus}"
PY="${PY:-$REPO/.venv/bin/python}"
WORKERS="${WORKERS:-2}"
N="${N:-100000}"
NAME="${NAME:-100k}"
SEED="${SEED:-1}"
OUT="$REPO/bench/data"

log() { echo "[make_corpus $(date +%H:%M:%S)] $*" >&2; }

# Debian documentation packages whose plain text makes up the corpus (list from the tool's README).
PKGS=(linux-doc-6.1 python3.11-doc python-django-doc debian-handbook perl-doc postgresql-doc-15 git-doc
      sphinx-doc cmake-doc python-sqlalchemy-doc python-sympy-doc python-scipy-doc python-pandas-doc
      python-astropy-doc python-sklearn-doc erlang-doc apache2-doc dict-gcide debian-reference-en
      python-biopython-doc maxima-doc octave-doc vim-doc sqlite3-doc rust-doc)

if [[ "${SKIP_APT:-0}" != 1 ]]; then
  log "apt-get install ${#PKGS[@]} doc packages"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${PKGS[@]}"
fi

log "pip install pyarrow lxml numpy xxhash into $PY's environment"
"$PY" -m pip install -q pyarrow lxml numpy xxhash

log "copy $TOOL -> $WORK"
mkdir -p "$WORK"
cp -r "$TOOL"/. "$WORK"/
chmod -R u+w "$WORK"
mkdir -p "$WORK/data" "$OUT"
cd "$WORK"

if [[ "${FORCE:-0}" != 1 && -s "$OUT/corpus_$NAME.parquet" && -s "$OUT/meta_$NAME.parquet" && -s "$OUT/gt_pairs_$NAME.tsv" ]]; then
  log "corpus_$NAME / meta_$NAME / gt_pairs_$NAME already in $OUT (FORCE=1 rebuilds)"
else
  if [[ ! -s data/pages.parquet ]]; then
    log "extract pages"
    "$PY" corpus/extract_pages.py data/pages.parquet --workers "$WORKERS"
  fi
  log "build corpus ($N docs, seed $SEED)"
  "$PY" corpus/build_corpus.py data/pages.parquet "$NAME" "$N" --seed "$SEED"
  log "build allpairs (cargo)"
  (cd rust/allpairs && cargo build --release -q)
  log "ground truth"
  "$PY" corpus/ground_truth.py "$NAME" --workers "$WORKERS"
  for f in "corpus_$NAME.parquet" "meta_$NAME.parquet" "gt_pairs_$NAME.tsv"; do
    cp "data/$f" "$OUT/$f"
  done
fi

log "JSONL copy"
"$PY" - "$OUT/corpus_$NAME.parquet" "$OUT/corpus_$NAME.jsonl" <<'EOF'
import json, os, re, sys
import pyarrow.parquet as pq
src, dst = sys.argv[1], sys.argv[2]
# UTF-8 JSON, but DEL, C1 controls (e.g. NEL U+0085) and U+2028/U+2029 \u-escaped, so that no line
# holds a character that str.splitlines() would treat as a line break.
esc = re.compile("[\x7f-\x9f\u2028\u2029]")
sub = lambda m: "\\u%04x" % ord(m.group())
pf = pq.ParquetFile(src)
n = 0
with open(dst + ".tmp", "w", encoding="utf-8") as f:
    for batch in pf.iter_batches(columns=["id", "text"], batch_size=10000):
        for i, t in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            f.write(esc.sub(sub, json.dumps({"id": str(i), "text": t}, ensure_ascii=False)) + "\n")
            n += 1
os.replace(dst + ".tmp", dst)
print(f"{dst}: {n} lines, {os.path.getsize(dst)} bytes", file=sys.stderr)
EOF

log "done"
ls -l "$OUT"
