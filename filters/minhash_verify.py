"""Candidate pairs and their verification for ``minhash_dedup``, in bounded memory.

Round 1 (:func:`bucket_pairs`) turns LSH buckets into candidate pairs. Round 2 checks them; the
plan (:func:`plan_checks`, on the driver) decides where each check runs so that a document's text
travels **at most once to each partition that needs it**, whatever the number of pairs:

1. Candidate pairs are grouped by connected component of the candidate graph (native
   union-find). A component of at most ``max_group_docs`` documents is one *group*: all its
   candidate pairs are checked where its documents are, each text shipped once.
2. A larger component (boilerplate, mirrors, templated pages: clusters of thousands) is cut into
   chunks of at most ``max_group_docs`` documents (in node order), each chunk a group. Its
   *representative* (smallest new node) is shipped to every chunk's partition, and every member
   is checked against it exactly (``rep`` checks: a star, not all pairs). Candidate pairs inside
   a chunk are checked exactly as well; candidate pairs **across** chunks are checked by the
   MinHash estimate (``cross``: each end's 512-byte signature, not its text, goes there). The
   counts of each kind are recorded in the stage metadata.
   With ``verify`` every component of 3 or more documents also gets representative checks, run
   first in the partition; its candidate pairs are then checked only if one of the two documents
   does not match the representative (``lazy`` checks: a pair of two documents that both match
   it adds nothing to the clusters). A templated cluster of 1,000 copies costs ~1,000 checks, not
   the ~250,000 candidate pairs its LSH buckets produce (``skipped_pairs`` in the metadata).
3. Groups are packed onto the ``buckets`` hash partitions by size (largest first onto the least
   loaded partition), so a partition holds at most ``candidate documents / buckets +
   max_group_docs`` documents.

Which checks exist and how (exact or estimate) depends only on the candidate pairs and the
parameters, never on ``buckets``: the result is the same on 1 or 2 workers, for any partitioning.

Pairs with a document of a saved index (``against``, no text) are always estimated.

Round 2's rows (:func:`emit_rows`) are one per (document, partition that needs it) with its
text and/or signature; :func:`check_partition` computes the similarities of one partition's
checks and reports what the partition received (one summary row: text bytes, rows).
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from curate.filters import minhash_core as mc
from curate.filters.minhash_index import OLD_BIT, sig_matrix
from curate.pipelines.stage import POS

#: kinds of checks (column ``kind`` of the plan and of checked rows)
CAND, REP, CROSS = 0, 1, 2
KIND_NAMES = {CAND: "candidate", REP: "representative", CROSS: "cross_chunk"}
#: kind of the one summary row each partition's check returns (a: text bytes, b: rows received)
SUMMARY = 9

KEY_SCHEMA = pa.schema([pa.field("key", pa.uint64()), pa.field(POS, pa.uint64())])
EDGE_SCHEMA = pa.schema([pa.field("a", pa.uint64()), pa.field("b", pa.uint64())])

CHECKED_SCHEMA = pa.schema(
    [
        pa.field("a", pa.uint64()),
        pa.field("b", pa.uint64()),
        pa.field("sim", pa.float64()),
        pa.field("exact", pa.bool_()),
        pa.field("kind", pa.int8()),
        pa.field("id_a", pa.string()),
        pa.field("id_b", pa.string()),
        pa.field("w_a", pa.float64()),
        pa.field("w_b", pa.float64()),
    ]
)


def row_schema(num_perm: int) -> pa.Schema:
    """Round 2's key rows: one per (document, partition), ``key`` == the partition index."""
    return pa.schema(
        [
            pa.field("key", pa.uint64()),
            pa.field(POS, pa.uint64()),
            pa.field("id", pa.string()),
            pa.field("weight", pa.float64()),
            pa.field("text", pa.large_string()),  # 64-bit offsets: no 2 GiB wall per partition
            pa.field("sig", pa.binary(4 * num_perm)),
        ]
    )


# ---------------------------------------------------------------- round 1: candidate pairs


def unique_pairs(a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Distinct (a, b) pairs sorted by a, then b."""
    if len(a) == 0:
        return a.astype(np.uint64), b.astype(np.uint64)
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    first = np.empty(len(a), dtype=bool)
    first[0] = True
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first]


def bucket_pairs(keys: npt.NDArray[np.uint64], nodes: npt.NDArray[np.uint64], max_bucket_size: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Candidate pairs (a < b) among rows sharing a key: every pair of a bucket of at most
    ``max_bucket_size`` nodes; for a larger bucket each node is paired with the bucket's first
    (smallest) node and with its predecessor. Pairs of two indexed (old) nodes are left out.
    Distinct pairs, sorted."""
    n = len(keys)
    if n < 2:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    order = np.lexsort((nodes, keys))
    k = keys[order]
    p = nodes[order]
    new_run = np.empty(n, dtype=bool)
    new_run[0] = True
    np.not_equal(k[1:], k[:-1], out=new_run[1:])
    run = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    lens = np.diff(np.append(starts, n))
    run_len = lens[run]
    a_parts: list[npt.NDArray[np.uint64]] = []
    b_parts: list[npt.NDArray[np.uint64]] = []
    idx = np.flatnonzero((run_len >= 2) & (run_len <= max_bucket_size))
    d = 1
    while idx.size:
        j = idx + d
        ok = j < n
        idx, j = idx[ok], j[ok]
        same = run[j] == run[idx]
        idx, j = idx[same], j[same]
        a_parts.append(p[idx])
        b_parts.append(p[j])
        d += 1
    big = np.flatnonzero((run_len > max_bucket_size) & ~new_run)
    if big.size:
        a_parts += [p[starts[run[big]]], p[big - 1]]
        b_parts += [p[big], p[big]]
    if not a_parts:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    a = np.concatenate(a_parts)
    b = np.concatenate(b_parts)
    keep = (a != b) & ~((a >= OLD_BIT) & (b >= OLD_BIT))
    return unique_pairs(np.minimum(a, b)[keep], np.maximum(a, b)[keep])


# ---------------------------------------------------------------- the plan (driver)


def _pack(arrays: dict[str, npt.NDArray[Any]]) -> pa.Table:
    """Arrays of different lengths as a one-row table of list columns (one Ray object)."""
    return pa.table({k: pa.array([v], pa.large_list(pa.from_numpy_dtype(v.dtype))) for k, v in arrays.items()})


def unpack(table: pa.Table) -> dict[str, npt.NDArray[Any]]:
    """Inverse of :func:`_pack` (zero-copy numpy views)."""
    return {name: table.column(name).chunk(0).values.to_numpy(zero_copy_only=False) for name in table.column_names}


def _assign(sizes: npt.NDArray[np.int64], buckets: int) -> npt.NDArray[np.int32]:
    """Partition of each group: largest groups first, each onto the least loaded partition
    (ties: the lowest index). Deterministic."""
    order = np.lexsort((np.arange(len(sizes)), -sizes))
    part = np.empty(len(sizes), dtype=np.int32)
    heap = [(0, i) for i in range(buckets)]
    for g in order.tolist():
        load, i = heapq.heappop(heap)
        part[g] = i
        heapq.heappush(heap, (load + int(sizes[g]), i))
    return part


def plan_checks(
    a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64], buckets: int, max_group_docs: int, verify: bool
) -> tuple[pa.Table, dict[str, Any]]:
    """The checks of round 2 for candidate pairs ``(a[i], b[i])`` (distinct, a < b), as a packed
    table (see :func:`unpack`): ``a``, ``b``, ``part`` (partition), ``exact`` (bool), ``kind``,
    sorted by partition; and ``need_node``, ``need_part``, ``need_text``, ``need_sig``: which
    document goes to which partition with what, sorted by node. Plus statistics."""
    nodes, roots = mc.connected_components(a, b)
    comp_roots, comp, sizes = np.unique(roots, return_inverse=True, return_counts=True)
    n_comp = len(comp_roots)
    big = sizes > max_group_docs
    # rank of each node inside its component (nodes are ascending, so this is node order)
    by_comp = np.argsort(comp, kind="stable")
    starts = np.cumsum(sizes) - sizes
    rank = np.empty(len(nodes), dtype=np.int64)
    rank[by_comp] = np.arange(len(nodes)) - np.repeat(starts, sizes)
    # groups: one per small component, ceil(size / max_group_docs) chunks per large one
    n_groups = np.where(big, -(-sizes // max_group_docs), 1)
    first_group = np.cumsum(n_groups) - n_groups
    group = first_group[comp] + np.where(big[comp], rank // max_group_docs, 0)
    group_sizes = np.bincount(group, minlength=int(n_groups.sum())).astype(np.int64)
    part_of_group = _assign(group_sizes, buckets)

    def group_of(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        return group[np.searchsorted(nodes, x)]  # type: ignore[no-any-return]

    ga, gb = group_of(a), group_of(b)
    same = ga == gb
    kinds = [np.where(same, CAND, CROSS).astype(np.int8)]
    ca, cb, cg = [a], [b], [ga]
    # representative checks: every member of a large component (with verify: of every component
    # of 3 or more) against its smallest new node (old nodes are larger than every new one; a
    # component always has a new node)
    starred = big | ((sizes >= 3) & verify)
    rep_of_comp = comp_roots  # the component root is its minimum node
    members = np.flatnonzero(starred[comp] & (nodes != rep_of_comp[comp]))
    if members.size:
        rep = rep_of_comp[comp[members]]
        m = nodes[members]
        ca.append(np.minimum(rep, m))
        cb.append(np.maximum(rep, m))
        cg.append(group[members])
        kinds.append(np.full(members.size, REP, np.int8))
    ca_all, cb_all = np.concatenate(ca), np.concatenate(cb)
    g_all, k_all = np.concatenate(cg), np.concatenate(kinds)
    # one check per pair: the representative check, else a candidate pair inside a group, else cross
    priority = np.array([1, 0, 2], dtype=np.int8)[k_all]  # REP, CAND, CROSS
    order = np.lexsort((priority, cb_all, ca_all))
    ca_all, cb_all, g_all, k_all = ca_all[order], cb_all[order], g_all[order], k_all[order]
    first = np.ones(len(ca_all), dtype=bool)
    first[1:] = (ca_all[1:] != ca_all[:-1]) | (cb_all[1:] != cb_all[:-1])
    ca_all, cb_all, g_all, k_all = ca_all[first], cb_all[first], g_all[first], k_all[first]
    part = part_of_group[g_all]
    old = (ca_all >= OLD_BIT) | (cb_all >= OLD_BIT)
    exact = (k_all != CROSS) & ~old & verify
    # a candidate pair in a group with representative checks is checked only if one of its
    # documents does not match the representative (else it adds nothing to the clusters)
    lazy = (k_all == CAND) & starred[comp[np.searchsorted(nodes, ca_all)]]
    by_part = np.argsort(part, kind="stable")
    ca_all, cb_all, part, exact, k_all, lazy = (
        ca_all[by_part], cb_all[by_part], part[by_part], exact[by_part], k_all[by_part], lazy[by_part]
    )
    # what goes where: (node, partition) with text if an exact check there needs it, else a signature
    ends = np.concatenate([ca_all, cb_all])
    ends_part = np.concatenate([part, part]).astype(np.uint64)
    ends_exact = np.concatenate([exact, exact])
    o = np.lexsort((ends_part, ends))
    ends, ends_part, ends_exact = ends[o], ends_part[o], ends_exact[o]
    new = np.ones(len(ends), dtype=bool)
    new[1:] = (ends[1:] != ends[:-1]) | (ends_part[1:] != ends_part[:-1])
    seg = np.cumsum(new) - 1
    n_need = int(new.sum())
    any_exact = np.zeros(n_need, dtype=bool)
    any_est = np.zeros(n_need, dtype=bool)
    np.logical_or.at(any_exact, seg, ends_exact)
    np.logical_or.at(any_est, seg, ~ends_exact)
    plan = _pack(
        {
            "a": ca_all.astype(np.uint64),
            "b": cb_all.astype(np.uint64),
            "part": part.astype(np.int32),
            "exact": exact.astype(np.bool_),
            "kind": k_all.astype(np.int8),
            "lazy": lazy.astype(np.bool_),
            "need_node": ends[new].astype(np.uint64),
            "need_part": ends_part[new].astype(np.int32),
            "need_text": any_exact,
            "need_sig": any_est,
        }
    )
    stats: dict[str, Any] = {
        "candidate_docs": int(len(nodes)),
        "candidate_components": int(n_comp),
        "largest_component": int(sizes.max()) if n_comp else 0,
        "large_components": int(big.sum()),
        "groups": int(len(group_sizes)),
        "planned_checks": {KIND_NAMES[k]: int((k_all == k).sum()) for k in (CAND, REP, CROSS)},
        "planned_lazy": int(lazy.sum()),
        "planned_exact": int(exact.sum()),
        "planned_estimated": int((~exact).sum()),
        "planned_text_rows": int(any_exact.sum()),
        "planned_sig_rows": int((any_est & ~any_exact).sum()),
        "max_partition_docs": int(np.bincount(ends_part[new].astype(np.int64), minlength=buckets).max()) if n_need else 0,
    }
    return plan, stats


class PlanIndex:
    """Worker-side lookups into a plan (built once per process and round)."""

    def __init__(self, plan: pa.Table) -> None:
        p = unpack(plan)
        self.a, self.b, self.part = p["a"], p["b"], p["part"]
        self.exact, self.kind, self.lazy = p["exact"], p["kind"], p["lazy"]
        self.need_node, self.need_part = p["need_node"], p["need_part"]
        self.need_text, self.need_sig = p["need_text"], p["need_sig"]

    def needs(self, nodes: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """For `nodes`: (index into `nodes`, index into the need arrays) of every (node, partition)
        entry, in order."""
        lo = np.searchsorted(self.need_node, nodes, "left")
        hi = np.searchsorted(self.need_node, nodes, "right")
        return _ranges(lo, hi)

    def checks_of(self, part: int) -> slice:
        lo = int(np.searchsorted(self.part, part, "left"))
        hi = int(np.searchsorted(self.part, part, "right"))
        return slice(lo, hi)


def _ranges(lo: npt.NDArray[np.intp], hi: npt.NDArray[np.intp]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """For half-open ranges [lo[i], hi[i]): (which range, value) of every element, in order."""
    counts = hi - lo
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(lo)), counts)
    starts = np.cumsum(counts) - counts
    values = np.arange(total) - np.repeat(starts, counts) + np.repeat(lo, counts)
    return owner, values


# ---------------------------------------------------------------- round 2 rows (workers, keys)


def emit_rows(
    index: PlanIndex,
    nodes: npt.NDArray[np.uint64],
    ids: pa.Array | pa.ChunkedArray,
    weights: npt.NDArray[np.float64],
    texts: pa.Array | pa.ChunkedArray | None,
    signatures: Any,
    num_perm: int,
) -> pa.Table:
    """One row per (document, partition that needs it): its text where an exact check there
    needs it, its signature where an estimated one does. ``signatures(rows) -> pa.Array`` is
    called with the indices (into `nodes`) of the rows needing one; `texts` None means the
    documents have no text (a saved index)."""
    schema = row_schema(num_perm)
    row, need = index.needs(nodes)
    if row.size == 0:
        return schema.empty_table()
    n = len(row)
    idx = pa.array(row)
    want_text = index.need_text[need]
    want_sig = index.need_sig[need]
    if texts is not None and want_text.any():
        taken = pc.cast(texts.take(idx), pa.large_string())
        text = pc.if_else(pa.array(want_text), taken, pa.scalar(None, pa.large_string()))
    else:
        text = pa.nulls(n, pa.large_string())
    if want_sig.any():
        at = np.flatnonzero(want_sig)
        sig_rows = signatures(row[at])
        # scatter into a nullable column: take from [sigs..., null] by position
        pick = np.full(n, len(at), dtype=np.int64)
        pick[at] = np.arange(len(at))
        sig = pa.concat_arrays([sig_rows, pa.nulls(1, pa.binary(4 * num_perm))]).take(pa.array(pick))
    else:
        sig = pa.nulls(n, pa.binary(4 * num_perm))
    return pa.table(
        {
            "key": index.need_part[need].astype(np.uint64),
            POS: nodes[row],
            "id": pc.cast(ids, pa.string()).take(idx),
            "weight": weights[row],
            "text": text,
            "sig": sig,
        },
        schema=schema,
    )


# ---------------------------------------------------------------- round 2 checks (workers, reduce)


def check_partition(
    index: PlanIndex,
    rows: pa.Table,
    num_perm: int,
    ngram: int,
    char_ngrams: bool,
    lowercase: bool,
    num_threads: int,
    threshold: float,
) -> pa.Table:
    """The similarities of the checks planned for the partition of `rows` (all rows of one
    partition: each document at most once), plus one ``SUMMARY`` row: a = text bytes received,
    b = rows received, sim = lazy checks skipped. Representative checks run first; a lazy check
    is skipped when both its documents match their representative (>= `threshold`)."""
    if rows.num_rows == 0:
        return CHECKED_SCHEMA.empty_table()
    keys = rows.column("key").to_numpy()
    part = int(keys[0])
    if (keys != keys[0]).any():
        raise RuntimeError("minhash_dedup: rows of several partitions in one reduce call")
    text_bytes = int(pc.sum(pc.binary_length(rows.column("text"))).as_py() or 0)
    sl = index.checks_of(part)
    ca, cb = index.a[sl], index.b[sl]
    exact, kind, lazy = index.exact[sl], index.kind[sl], index.lazy[sl]
    node = rows.column(POS).to_numpy()
    order = np.argsort(node, kind="stable")
    sorted_nodes = node[order]
    if len(sorted_nodes) > 1 and (sorted_nodes[1:] == sorted_nodes[:-1]).any():
        raise RuntimeError("minhash_dedup: a document reached one partition twice")

    def row_of(x: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        at = np.minimum(np.searchsorted(sorted_nodes, x), len(sorted_nodes) - 1)
        return order[at], sorted_nodes[at] == x

    ia, fa = row_of(ca)
    ib, fb = row_of(cb)
    found = fa & fb  # a missing end (not live any more) leaves the check out
    ia, ib, ca, cb, exact, kind, lazy = ia[found], ib[found], ca[found], cb[found], exact[found], kind[found], lazy[found]
    sim = np.full(len(ia), np.nan)
    text_col = rows.column("text")
    sig_col = rows.column("sig")
    sigs: npt.NDArray[np.uint32] | None = None
    slot = np.empty(0, np.int64)

    def compute(which: npt.NDArray[np.intp]) -> None:
        nonlocal sigs, slot
        ex = which[exact[which]]
        if ex.size:
            sim[ex] = mc.exact_jaccard_pairs(text_col, ia[ex], ib[ex], ngram, char_ngrams, lowercase=lowercase, num_threads=num_threads)
        est = which[~exact[which]]
        if est.size:
            if sigs is None:
                has = pc.is_valid(sig_col).to_numpy(zero_copy_only=False)
                slot = np.cumsum(has) - 1  # row -> position among rows with a signature
                sigs = sig_matrix(sig_col.filter(pa.array(has)), num_perm)
            sim[est] = mc.estimated_jaccard(sigs, slot[ia[est]], slot[ib[est]]).astype(np.float64)

    compute(np.flatnonzero(~lazy))
    todo = np.flatnonzero(lazy)
    if todo.size:
        # documents linked to their representative: the representatives, and members that match
        is_rep = kind == REP
        linked = np.concatenate([np.minimum(ca[is_rep], cb[is_rep]), np.maximum(ca[is_rep], cb[is_rep])[sim[is_rep] >= threshold - 1e-12]])
        linked = np.unique(linked)
        both = np.isin(ca[todo], linked) & np.isin(cb[todo], linked)
        compute(todo[~both])
    done = ~np.isnan(sim) | ~lazy
    skipped = int((~done).sum())
    summary = pa.table(
        {
            "a": pa.array([text_bytes], pa.uint64()),
            "b": pa.array([rows.num_rows], pa.uint64()),
            "sim": [float(skipped)],
            "exact": [False],
            "kind": pa.array([SUMMARY], pa.int8()),
            "id_a": pa.nulls(1, pa.string()),
            "id_b": pa.nulls(1, pa.string()),
            "w_a": [0.0],
            "w_b": [0.0],
        },
        schema=CHECKED_SCHEMA,
    )
    keep = np.flatnonzero(done)
    ia, ib, ca, cb, exact, kind, sim = ia[keep], ib[keep], ca[keep], cb[keep], exact[keep], kind[keep], sim[keep]
    ids = rows.column("id")
    w = rows.column("weight").to_numpy()
    checked = pa.table(
        {
            "a": ca,
            "b": cb,
            "sim": sim,
            "exact": exact,
            "kind": kind,
            "id_a": ids.take(pa.array(ia)),
            "id_b": ids.take(pa.array(ib)),
            "w_a": w[ia],
            "w_b": w[ib],
        },
        schema=CHECKED_SCHEMA,
    )
    return pa.concat_tables([checked, summary])


__all__ = [
    "CAND",
    "CHECKED_SCHEMA",
    "CROSS",
    "EDGE_SCHEMA",
    "KEY_SCHEMA",
    "REP",
    "SUMMARY",
    "PlanIndex",
    "bucket_pairs",
    "check_partition",
    "emit_rows",
    "plan_checks",
    "row_schema",
    "unique_pairs",
    "unpack",
]
