"""The reference features of an evaluation: the training subset's and the test subset's features and Gaussian
statistics in each feature space, from the cache on disk (computed once per dataset, subset and space)."""
from __future__ import annotations

import torch

from memsweep.eval.features import FeatureSpace
from memsweep.metrics.fid import GaussianStats, frechet_distance, gaussian_stats
from memsweep.store.cache import Cache, tensor_hash


class References:
    """Features and Gaussian statistics of the training subset and the test subset in each feature space,
    from the cache on disk (computed once per dataset, subset and space, shared by the runs of a sweep)."""

    def __init__(self, data, data_cfg, cache: Cache, device):
        self.images = {"train": data.train_x, "test": data.test_x}
        self.data_cfg, self.cache, self.device = data_cfg, cache, device
        self._hashes: dict[str, str] = {}

    def describe(self, split: str) -> dict:
        if split not in self._hashes:
            self._hashes[split] = tensor_hash(self.images[split])
        c = self.data_cfg
        d = {"dataset": str(c.get("name")), "split": split, "count": len(self.images[split]),
             "test_size": c.get("test_size"), "images": self._hashes[split]}
        if split == "train":
            d.update(n=c.get("n"), offset=c.get("offset"))
        return d

    def entry(self, space: FeatureSpace, split: str) -> dict:
        """{"mean", "cov"[, "features"]} of a split in a space."""
        parts = {**self.describe(split), "space": space.identity()}
        images = self.images[split]

        def compute():
            f = space(images).float()
            stats = gaussian_stats(f)  # on the features' device
            out = {"mean": stats[0].cpu(), "cov": stats[1].cpu(), "count": len(f)}
            # fewer images than dimensions: the factor of the cheaper exact route (entries cached without
            # one, before it was kept, take the full route to the same value)
            if stats.factor is not None:
                out["factor"] = stats.factor.cpu()
            if space.cache_features:
                out["features"] = f.cpu()
            return out
        return self.cache.get("features", parts, compute,
                              what=f"{space.name} {parts['dataset']} {split} ({len(images)} images)")

    def features(self, space: FeatureSpace, split: str) -> torch.Tensor:
        if not space.cache_features:
            return space(self.images[split])
        return self.entry(space, split)["features"].to(self.device)

    def stats(self, space: FeatureSpace, split: str) -> GaussianStats:
        e = self.entry(space, split)
        return GaussianStats(e["mean"], e["cov"], e.get("factor"))

    def fd_train_test(self, space: FeatureSpace) -> float:
        """The Frechet distance between the training subset and the test subset: what a model that generates
        exactly its training set would score against the test set (the floor of FID at small n)."""
        parts = {"train": {**self.describe("train"), "space": space.identity()},
                 "test": {**self.describe("test"), "space": space.identity()}}
        value = self.cache.get("values", parts, lambda: {"fd_train_test": frechet_distance(
            self.stats(space, "train"), self.stats(space, "test"))}, what=f"fd {space.name} train-test")
        return float(value["fd_train_test"])
