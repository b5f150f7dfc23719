"""The rules a split of a dataset must meet, shared by every source: the training subset is images [offset,
offset + n) of the pool, the test subset a fixed held-out set. Each rule returns the one line that says what is
wrong and what to set (None: nothing wrong); the callers raise it or warn with it."""
from __future__ import annotations


def tail_problem(test_size: int, count: int, where: str) -> str | None:
    """A held-out tail (the last test_size of `count` images) must leave the 2 images data.n needs at least."""
    if count - test_size >= 2:
        return None
    if count < 4:
        return (f"data.test_size={test_size}: {where} has only {count} images; memsweep needs at least 4 (2 to train "
                "on, 2 held out to test on)")
    return (f"data.test_size={test_size}: {where} has only {count} images, and the held-out tail must leave at least "
            f"2 to train on; set data.test_size={max(2, count // 5)} (a fifth of them) or at most {count - 2}")


def subset_problem(n: int, offset: int, available: int, name: str) -> str | None:
    """The training subset [offset, offset + n) must lie within the `available` training images."""
    if n + offset <= available:
        return None
    fix = (f"set data.n={available - offset} or less" if available - offset >= 2
           else f"set data.offset={max(0, available - n)} or less" if available >= n
           else "lower data.test_size, or give more images")
    return f"data.n={n} (data.offset={offset}) exceeds the {available} training images of {name}; {fix}"


def class_problem(train_labels, test_labels, names, advice: str) -> str | None:
    """A training subset that lacks classes the test subset holds (the test loss then measures classes the model
    never saw), or the reverse, when the order and not the subsets' sizes is the cause: a subset of n images could
    hold every class of the other one. `names`: label -> class name."""
    train, test = set(map(int, train_labels)), set(map(int, test_labels))
    lacks = sorted(test - train) if len(train_labels) >= len(test) else []
    spare = sorted(train - test) if len(test_labels) >= len(train) else []
    if not lacks and not spare:
        return None
    def show(labels):
        return ", ".join(str(names[c]) for c in labels[:5]) + (", ..." if len(labels) > 5 else "")
    what = (f"the training subset lacks {show(lacks)}, which the test subset holds" if lacks
            else f"the test subset lacks {show(spare)}, which the training subset holds")
    return f"data: {what} (so the test loss does not measure the training distribution); {advice}"
