"""PETsys files for tests, written row by row as ``DataFileWriter.cpp`` (sw_daq_tofpet2) writes
them: groups and coincidences, normal or compact, binary or text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hw.formats.petsys_hits import COINCIDENCE, GROUP, SINGLE


def split_into_groups(singles: np.ndarray, rng: np.random.Generator, share: float = 0.3
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(hits, starts): each single (SINGLE_DTYPE, keV) a group whose first hit is the single
    itself; ``share`` of them get one or two more hits (a neighbouring channel, a few ns later,
    a little energy, in 1/64 keV as text carries it exactly). The first hit's time, channel and
    energy stay the single's."""
    extra = np.where(rng.random(singles.size) < share, rng.integers(1, 3, singles.size), 0)
    sizes = 1 + extra
    starts = np.concatenate([[0], np.cumsum(sizes)])
    hits = np.zeros(int(starts[-1]), SINGLE)
    first = starts[:-1]
    hits["time"][first], hits["channel_id"][first] = singles["t"], singles["crystal"]
    hits["energy"][first] = singles["energy"]
    others = np.setdiff1d(np.arange(hits.size), first)
    owner = np.repeat(np.arange(singles.size), sizes)[others]
    hits["time"][others] = singles["t"][owner] + rng.integers(100, 3000, others.size)
    hits["channel_id"][others] = (singles["crystal"][owner] + 1) % 4096
    hits["energy"][others] = rng.integers(5 * 64, 60 * 64, others.size) / 64
    return hits, starts


def _group_rows(hits: np.ndarray, starts: np.ndarray, limit: int) -> np.ndarray:
    sizes = np.diff(starts)
    keep = np.concatenate([np.arange(a, a + min(n, limit)) for a, n in zip(starts[:-1], sizes,
                                                                           strict=True)])
    rows = np.zeros(keep.size, GROUP)
    owner = np.searchsorted(starts, keep, side="right") - 1
    rows["mh_n"], rows["mh_j"] = sizes[owner], keep - starts[owner]
    for k in SINGLE.names:
        rows[k] = hits[k][keep]
    return rows


def write_groups(path: Path, hits: np.ndarray, starts: np.ndarray, *, compact: bool = False,
                 text: bool = False, limit: int = 64) -> Path:
    """Groups as ``writeGroupEvents``: ``limit`` is PETsys' hit limit (``mh_n`` stays the
    group's whole count)."""
    rows = _group_rows(hits, starts, limit)
    with path.open("w" if text else "wb") as fh:
        if not compact:
            if text:
                fh.writelines(f"{r['mh_n']}\t{r['mh_j']}\t{r['time']}\t{r['energy']:f}\t"
                              f"{r['channel_id']}\n" for r in rows)
            else:
                rows.tofile(fh)
            return path
        for a in np.flatnonzero(rows["mh_j"] == 0):
            n = min(int(rows["mh_n"][a]), limit)
            _compact(fh, [n], rows[a:a + n], text)
    return path


def _compact(fh, counts: list[int], hits: np.ndarray, text: bool) -> None:
    if text:
        fh.write("\t".join(map(str, counts)) + "\n")
        fh.writelines(f"{h['time']}\t{h['energy']:f}\t{h['channel_id']}\n" for h in hits)
        return
    fh.write(bytes(counts))
    single = np.zeros(hits.size, SINGLE)
    for k in SINGLE.names:
        single[k] = hits[k]
    fh.write(single.tobytes())


def write_coincidences(path: Path, hits: np.ndarray, starts: np.ndarray, *,
                       compact: bool = False, text: bool = False) -> Path:
    """Events of two groups (groups 2k and 2k + 1 of ``hits``, ``starts``) as
    ``writeCoincidenceEvents``: rows (m, n) for m < hits1, n < hits2 unless both are > 0."""
    with path.open("w" if text else "wb") as fh:
        for e in range(0, starts.size - 1, 2):
            g1 = hits[starts[e]:starts[e + 1]]
            g2 = hits[starts[e + 1]:starts[e + 2]]
            if compact:
                _compact(fh, [g1.size, g2.size], np.concatenate([g1, g2]), text)
                continue
            pairs = [(m, n) for m in range(g1.size) for n in range(g2.size) if m == 0 or n == 0]
            rows = np.zeros(len(pairs), COINCIDENCE)
            for i, (m, n) in enumerate(pairs):
                rows[i] = (g1.size, m, g1["time"][m], g1["energy"][m], g1["channel_id"][m],
                           g2.size, n, g2["time"][n], g2["energy"][n], g2["channel_id"][n])
            if text:
                fh.writelines("\t".join(f"{v:f}" if isinstance(v, np.floating) else str(v)
                                        for v in r.item()) + "\n" for r in rows)
            else:
                rows.tofile(fh)
    return path
