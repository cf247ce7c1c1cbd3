"""Why does clustering the bench's features stop at ARI ~0.95 against the personas? (issue #17)

    python -m bench.stability --customers 1000 --seed 1 --features-out /tmp/s1.npz
    python -m bench.ari_ceiling /tmp/s1.npz [/tmp/s2.npz ...]

Reads the final feature matrix that ``bench/stability.py`` clusters (raw features, standardised
here exactly as the bench does), the personas, the online memberships and the batch k-means labels,
and reports:

1. the confusion matrix personas x clusters of the online model and of batch k-means;
2. per persona and feature: mean and standard deviation in standard units, and the separation
   (difference of means over the pooled within-persona standard deviation) of every pair of personas
   on every feature: which features tell which personas apart, and which only add spread;
3. **supervised ceilings**, fit on the true personas (numpy/scipy only, 5-fold cross-validated so
   a classifier is not scored on the customers it was fit on): nearest class mean (k-means' own
   decision rule with the *best possible* centres), a shared-covariance Gaussian (LDA) and a
   per-persona Gaussian (QDA). If these reach ARI >= 0.99, the features do separate the personas
   and the shortfall is k-means' (isotropic, equal-spread clusters in standard units);
4. **oracle k-means**: Lloyd steps started from the true persona means (is the k-means optimum
   next to the truth itself at ~0.95?);
5. batch k-means (the bench's: scipy ``kmeans2``, k-means++ seeding, best of ``restarts`` by
   inertia) with each feature scaled by its pooled within-cluster standard deviation, estimated
   from the previous round's clusters (no labels), and on variants of the features (one left out).

Nothing here feeds the product: the persona labels are used only to score.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from bench.stability import adjusted_rand_index, batch_kmeans, batch_kmeans_within


def standardise(x: np.ndarray) -> np.ndarray:
    """As bench/stability.py does for batch k-means (and models.clustering.Scaler for the model)."""
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 1e-9, std, 1.0)


def confusion(truth: np.ndarray, labels: np.ndarray) -> str:
    personas, clusters = sorted(set(truth)), sorted(set(labels.tolist()))
    width = max(6, *(len(str(c)) + 1 for c in clusters))
    lines = [f"  {'':10s}" + "".join(f"{str(c):>{width}s}" for c in clusters)]
    for p in personas:
        row = [int(((truth == p) & (labels == c)).sum()) for c in clusters]
        lines.append(f"  {p:10s}" + "".join(f"{n:>{width}d}" for n in row))
    return "\n".join(lines)


def majority_accuracy(truth: np.ndarray, labels: np.ndarray) -> float:
    """Share of customers in their cluster's majority persona."""
    hit = 0
    for c in set(labels.tolist()):
        _, counts = np.unique(truth[labels == c], return_counts=True)
        hit += counts.max()
    return hit / len(truth)


# ---- supervised classifiers (numpy only) -------------------------------------------------------

def _fit_predict(kind: str, ztr: np.ndarray, ytr: np.ndarray, zte: np.ndarray, classes: list) -> np.ndarray:
    means = np.array([ztr[ytr == c].mean(axis=0) for c in classes])
    if kind == "nearest mean":
        d = ((zte[:, None, :] - means[None]) ** 2).sum(axis=2)
        return np.asarray(classes)[d.argmin(axis=1)]
    dim = ztr.shape[1]
    ridge = 1e-3 * np.eye(dim)  # constant features within a persona (browsers' purchase placeholders)
    scores = []
    if kind == "LDA":
        resid = np.vstack([ztr[ytr == c] - means[i] for i, c in enumerate(classes)])
        cov = np.cov(resid, rowvar=False) + ridge
        inv = np.linalg.inv(cov)
        for i in range(len(classes)):
            diff = zte - means[i]
            scores.append(-0.5 * np.einsum("ij,jk,ik->i", diff, inv, diff))
    else:  # QDA
        for i, c in enumerate(classes):
            cov = np.cov(ztr[ytr == c], rowvar=False) + ridge
            inv = np.linalg.inv(cov)
            _, logdet = np.linalg.slogdet(cov)
            diff = zte - means[i]
            scores.append(-0.5 * np.einsum("ij,jk,ik->i", diff, inv, diff) - 0.5 * logdet)
    return np.asarray(classes)[np.argmax(np.array(scores), axis=0)]


def cross_validated(kind: str, z: np.ndarray, truth: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    classes = sorted(set(truth))
    order = np.random.default_rng(seed).permutation(len(z))
    out = np.empty(len(z), dtype=object)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        out[test] = _fit_predict(kind, z[train], truth[train], z[test], classes)
    return out.astype(str)


def oracle_lloyd(z: np.ndarray, truth: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Lloyd's k-means started from the true persona means: the k-means fixed point nearest the truth."""
    centres = np.array([z[truth == c].mean(axis=0) for c in sorted(set(truth))])
    labels = None
    for _ in range(iterations):
        new = ((z[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for j in range(len(centres)):
            if (labels == j).any():
                centres[j] = z[labels == j].mean(axis=0)
    assert labels is not None
    return labels


# ---- feature transformations -------------------------------------------------------------------

def transformations(x: np.ndarray, features: list[str]) -> dict[str, np.ndarray]:
    """Candidate variants of the raw feature matrix (before standardisation)."""
    i = {f: n for n, f in enumerate(features)}
    out = {"as is": x}
    for f in features:
        out[f"without {f}"] = np.delete(x, i[f], axis=1)
    return out


def report(path: Path, transforms: bool) -> None:
    data = np.load(path, allow_pickle=False)
    x, truth, online, batch = data["x"], data["truth"].astype(str), data["online"].astype(str), data["batch"]
    features = [str(f) for f in data["features"]]
    seed, restarts = int(data["seed"]), int(data["restarts"])
    z = standardise(x)
    personas = sorted(set(truth))
    print(f"=== {path}: {len(x)} customers, seed {seed}")

    for name, labels in (("online (segstream)", online), ("batch k-means", batch.astype(str))):
        print(f"\n{name}: ARI {adjusted_rand_index(truth.tolist(), labels.tolist()):.3f}, "
              f"majority accuracy {majority_accuracy(truth, labels):.3f}")
        print(confusion(truth, labels))

    print("\nper persona, mean (sd) of each feature in standard units:")
    print(f"  {'':10s}" + "".join(f"{f[:12]:>14s}" for f in features))
    for p in personas:
        zp = z[truth == p]
        print(f"  {p:10s}" + "".join(f"{m:+7.2f} ({s:4.2f})" for m, s in zip(zp.mean(axis=0), zp.std(axis=0))))
    print("  within-persona variance share of each feature (1 - R² of the personas):")
    within = np.array([sum(((z[truth == p, j] - z[truth == p, j].mean()) ** 2).sum() for p in personas) / len(z)
                       for j in range(len(features))])
    print(f"  {'':10s}" + "".join(f"{w:14.2f}" for w in within))

    print("\npairs of personas: separation on each feature, |mean difference| / pooled within sd "
          "(features over 2 in brackets are the ones that tell them apart):")
    for a in range(len(personas)):
        for b in range(a + 1, len(personas)):
            za, zb = z[truth == personas[a]], z[truth == personas[b]]
            pooled = np.sqrt((za.var(axis=0) + zb.var(axis=0)) / 2)
            sep = np.abs(za.mean(axis=0) - zb.mean(axis=0)) / np.where(pooled > 1e-9, pooled, 1e-9)
            dist = np.linalg.norm(za.mean(axis=0) - zb.mean(axis=0))
            strong = ", ".join(f"{features[j]} {min(sep[j], 99):.1f}" for j in np.argsort(-sep) if sep[j] >= 2)
            print(f"  {personas[a]:8s} / {personas[b]:8s} centre distance {dist:5.2f}; {strong or '(none over 2)'}")

    print("\nsupervised ceilings (fit on the true personas, 5-fold cross-validated):")
    for kind in ("nearest mean", "LDA", "QDA"):
        pred = cross_validated(kind, z, truth)
        print(f"  {kind:13s} ARI {adjusted_rand_index(truth.tolist(), pred.tolist()):.3f}, "
              f"accuracy {np.mean(pred == truth):.3f}")
        if kind == "QDA":
            print(confusion(truth, pred))
    oracle = oracle_lloyd(z, truth)
    print(f"  k-means from the true means (Lloyd to its fixed point): ARI "
          f"{adjusted_rand_index(truth.tolist(), oracle.tolist()):.3f}")

    wrong = batch_kmeans(z, len(personas), restarts, seed)
    centres = np.array([z[wrong == j].mean(axis=0) for j in range(len(personas))])
    nearest_truth = np.array([np.argmin(((z[truth == p].mean(axis=0) - centres) ** 2).sum(axis=1)) for p in personas])
    mis = np.array([wrong[n] != nearest_truth[personas.index(t)] for n, t in enumerate(truth)])
    print(f"\nbatch k-means' misplaced customers ({mis.sum()}): persona -> count, and their mean raw features "
          f"against their persona's")
    for p in personas:
        m = mis & (truth == p)
        if m.any():
            print(f"  {p:10s} {m.sum():3d}: " + ", ".join(
                f"{f} {x[m, j].mean():.2f} vs {x[(truth == p) & ~mis, j].mean():.2f}" for j, f in enumerate(features)))

    print("\nbatch k-means, each feature scaled by its pooled within-cluster standard deviation under the "
          "previous round's clusters (label-free; models.clustering.Scaler.fit with segments):")
    for rounds in (0, 1, 2, 5):
        lab = batch_kmeans_within(x, len(personas), restarts, seed, floor=0.1, rounds=rounds)
        print(f"  {rounds} round(s): ARI {adjusted_rand_index(truth.tolist(), lab.tolist()):.3f}")
    if transforms:
        print("\nbatch k-means (the bench's) on variants of the features:")
        for name, xt in transformations(x, features).items():
            zt = standardise(xt)
            lab = batch_kmeans(zt, len(personas), restarts, seed)
            qda = cross_validated("QDA", zt, truth)
            print(f"  {name:26s} batch ARI {adjusted_rand_index(truth.tolist(), lab.tolist()):.3f}   "
                  f"oracle Lloyd {adjusted_rand_index(truth.tolist(), oracle_lloyd(zt, truth).tolist()):.3f}   "
                  f"QDA {adjusted_rand_index(truth.tolist(), qda.tolist()):.3f}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("npz", type=Path, nargs="+", help="written by bench/stability.py --features-out")
    parser.add_argument("--no-transforms", action="store_true", help="skip batch k-means on feature variants")
    args = parser.parse_args()
    for path in args.npz:
        report(path, not args.no_transforms)


if __name__ == "__main__":
    main()
