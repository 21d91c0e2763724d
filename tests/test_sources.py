"""Data sources: WebDataset shards and Hugging Face datasets against the image folder, the DDP dealing, timm interop.

The data: the real digits (16 px) written as JPEG files in the ImageNet layout (train 50 images, val 49: one removed
to make it odd), converted by ``write_shards`` into an odd number (7) of uneven shards per split (6 of 8 samples and
one of 2, resp. 1), and into parquet files with a ``ClassLabel`` column. The same JPEG bytes everywhere, so every
source must give the same images; the pipeline (a random-resized crop with scale and ratio fixed to 1 on a square
image, no flip) is the identity up to normalisation, so epochs can be compared as multisets of tensors.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from timm_recipes.config import RecipeError, apply_overrides
from timm_recipes.data.datasets import DigitsDataset, ImageFolderDataset, decode_image
from timm_recipes.data.sources import CorruptSampleError, build_split, iter_raw, source_classes
from timm_recipes.data.sources.sharding import Piece, WorkerPlan, eval_plan, shard_order, train_plan, train_steps
from timm_recipes.data.sources.wds import WdsSource, resolve_shards
from timm_recipes.data.sources.writing import write_shards
from timm_recipes.recipes import get_preset
from timm_recipes.train.builders import build_datasets, create_eval_loader, create_train_loader
from timm_recipes.train.distributed import Distributed

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = [str(d) for d in range(10)]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sources")
    folder = DigitsDataset.export_folder(base / "folder", size=16, per_class=5, ext=".jpg", splits=("train", "val"))
    sorted((folder / "val" / "3").iterdir())[0].unlink()  # 49 validation images
    shards = base / "shards"
    write_shards(folder, shards, name="digits", samples_per_shard=8, seed=3, progress=False)
    parquet = base / "parquet"
    _write_parquet(folder, parquet)
    return {"base": base, "folder": folder, "shards": shards, "parquet": parquet}


def _write_parquet(folder: Path, out: Path, *, class_label: bool = True, labels: dict[int, int] | None = None) -> None:
    import datasets

    out.mkdir(parents=True)
    for split, name in (("train", "train"), ("val", "validation")):
        ds = ImageFolderDataset(folder / split)
        rows = {"image": [{"bytes": Path(p).read_bytes(), "path": None} for p, _ in ds.samples],
                "label": [(labels or {}).get(i, t) for i, (_, t) in enumerate(ds.samples)]}  # fmt: skip
        label = datasets.ClassLabel(names=[f"digit {c}" for c in CLASSES]) if class_label else datasets.Value("int64")
        features = datasets.Features({"image": datasets.Image(), "label": label})
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(out / f"{name}.parquet"))


def _recipe(dataset: str, root: Path | str, **overrides):
    changes = {
        "data.dataset": dataset, "data.root": str(root), "data.batch_size": 5, "data.num_workers": 0,
        "aug.train_pipeline": "rrc", "aug.train_size": 16, "aug.rrc_scale": [1.0, 1.0], "aug.rrc_ratio": [1.0, 1.0],
        "aug.hflip": 0.0, "aug.cutout_p": 0.0, "aug.test_size": 16, "aug.test_crop_pct": 1.0, "mix.mixup_alpha": 0.0,
        "mix.cutmix_alpha": 0.0, "schedule.epochs": 2, "schedule.warmup_epochs": 0.0, "run.patience": None,
        "run.progress": False, "run.seed": 11,
    }  # fmt: skip
    return apply_overrides(get_preset("demo"), {**changes, **overrides})


def _digest(image: torch.Tensor, label: torch.Tensor) -> tuple[str, int]:
    return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest(), int(label)


def _epoch(loader, epoch: int) -> list[list[tuple[str, int]]]:
    loader.set_epoch(epoch)
    return [[_digest(x, y) for x, y in zip(images, labels)] for images, labels in loader]


def _flat(batches) -> collections.Counter:
    return collections.Counter(itertools.chain.from_iterable(batches))


# ------------------------------------------------------------------------------------------ the same images
@pytest.mark.parametrize("dataset", ["wds", "hfds"])
def test_training_sees_the_folder_images_every_epoch(data, dataset) -> None:
    root = data["shards"] if dataset == "wds" else data["parquet"]
    folder_recipe, recipe = _recipe("folder", data["folder"]), _recipe(dataset, root)
    ref = build_datasets(folder_recipe)
    ref_loader = create_train_loader(folder_recipe, ref, Distributed(), CPU, None)
    splits = build_datasets(recipe)
    assert splits.classes == (CLASSES if dataset == "wds" else [f"digit {c}" for c in CLASSES])
    assert (len(splits.train), len(splits.val), splits.test) == (50, 49, None)
    loader = create_train_loader(recipe, splits, Distributed(), CPU, None)
    assert len(loader) == len(ref_loader) == 10
    epochs = [_epoch(loader, e) for e in (0, 1)]
    for e, batches in enumerate(epochs):
        assert _flat(batches) == _flat(_epoch(ref_loader, e))  # the same multiset of 50 images and labels
        assert [len(b) for b in batches] == [5] * 10
    assert epochs[0] != epochs[1]  # a new order every epoch
    val = create_eval_loader(recipe, splits.val)
    assert _flat(_epoch(val, 0)) == _flat(_epoch(create_eval_loader(folder_recipe, ref.val), 0))


def test_shards_decode_large_photos_like_the_folder_reduced_where_safe(tmp_path) -> None:
    """A 3000×2000 photo through the multi-scale crop: the shard source gives exactly the folder's tensor for the same
    (seed, epoch, rank, position), and that tensor is the reduced decode (1/2), not the full one."""
    from timm_recipes.data import create_loader, multiscale_crop_pipeline
    from timm_recipes.data.datasets import _Key, _SeededDataset, sample_jpeg_bytes
    from timm_recipes.data.decode import decode_and_transform, reduction_factor

    data = sample_jpeg_bytes((3000, 2000), quality=90)[0]
    (tmp_path / "folder" / "train" / "photo").mkdir(parents=True)
    (tmp_path / "folder" / "train" / "photo" / "0.jpg").write_bytes(data)
    write_shards(tmp_path / "folder", tmp_path / "shards", name="p", samples_per_shard=8, seed=0, progress=False)
    pipe = multiscale_crop_pipeline()
    assert reduction_factor(pipe, 2000, 3000) == 2
    folder = ImageFolderDataset(tmp_path / "folder" / "train", pipe)
    source = WdsSource(resolve_shards(str(tmp_path / "shards"), "train"), ["photo"], pipe)
    for epoch in (0, 1):
        ref = _epoch(create_loader(folder, batch_size=1, shuffle=True, seed=5), epoch)
        assert _epoch(source.loader(batch_size=1, train=True, seed=5), epoch) == ref
        holder = _SeededDataset(folder, 5)
        holder.seed_transform(_Key(epoch, 0, 0, 0))
        reduced = decode_and_transform(data, pipe)
        holder.seed_transform(_Key(epoch, 0, 0, 0))
        full = decode_and_transform(data, pipe, reduce=False)
        assert ref == [[_digest(reduced, torch.tensor(0))]] != [[_digest(full, torch.tensor(0))]]


def test_workers_persistent_workers_and_resume_give_the_same_epochs(data) -> None:
    split = resolve_shards(str(data["shards"]), "train")
    source = WdsSource(split, CLASSES, shuffle_buffer=0)
    one = source.loader(batch_size=5, train=True, seed=4)
    reference = [_epoch(one, e) for e in (0, 1, 2)]
    assert reference[0] != reference[1] != reference[2]
    persistent = source.loader(batch_size=5, train=True, seed=4, num_workers=2, persistent_workers=True)
    got = [_epoch(persistent, e) for e in (0, 1, 2)]
    for e in range(3):  # persistent workers see every new epoch (no replay); only the batch interleaving differs
        assert _flat(got[e]) == _flat(reference[e])
    resumed = source.loader(batch_size=5, train=True, seed=4)  # a fresh loader, as after a resume at epoch 2
    assert _epoch(resumed, 2) == reference[2]


@pytest.mark.parametrize("dataset", ["folder", "wds"])
def test_recipe_persistent_workers_keep_their_processes_and_the_epochs(data, dataset) -> None:
    """``data.persistent_workers`` reaches the DataLoader, and the epochs equal those of fresh workers per epoch."""
    root = data["folder"] if dataset == "folder" else data["shards"]
    fresh = _recipe(dataset, root, **{"data.num_workers": 1})
    kept = _recipe(dataset, root, **{"data.num_workers": 1, "data.persistent_workers": True})
    loaders = {}
    for name, recipe in (("fresh", fresh), ("kept", kept)):
        loaders[name] = create_train_loader(recipe, build_datasets(recipe), Distributed(), CPU, None)
    assert (loaders["fresh"].loader.persistent_workers, loaders["kept"].loader.persistent_workers) == (False, True)
    got = {name: [_epoch(loader, e) for e in (0, 1)] for name, loader in loaders.items()}
    assert got["kept"] == got["fresh"] and got["kept"][0] != got["kept"][1]
    assert loaders["kept"].loader._iterator is not None  # the worker processes outlive the epoch
    val = create_eval_loader(kept, build_datasets(kept).val)
    assert val.loader.persistent_workers and _flat(_epoch(val, 0)) == _flat(_epoch(val, 1))


# ------------------------------------------------------------------------------------------ the dealing
def _samples_of(plan, lengths) -> list[tuple[int, int]]:
    out = []
    for p in plan.pieces:
        out.extend((p.shard, i) for i in range(p.start, lengths[p.shard] if p.stop is None else p.stop))
    return out


PLANS = [((8,) * 6 + (2,), 2, 2, 4), ((5, 1, 9), 2, 3, 2), ((3,), 4, 2, 1), ((7, 7, 7, 7, 1), 3, 1, 3)]


@pytest.mark.parametrize(("lengths", "world", "workers", "batch"), PLANS)
def test_train_plan_is_exact_equal_and_epoch_dependent(lengths, world, workers, batch) -> None:
    n = sum(lengths)
    steps = train_steps(n, world, batch)
    for epoch in range(3):
        order = shard_order(len(lengths), seed=9, epoch=epoch)
        assert order == shard_order(len(lengths), seed=9, epoch=epoch) and sorted(order) == list(range(len(lengths)))
        stream = [(s, i) for s in order for i in range(lengths[s])]
        seen = []
        for rank in range(world):
            plans = train_plan(num_shards=len(lengths), num_samples=n, lengths=lengths, seed=9, epoch=epoch,
                               rank=rank, world_size=world, num_workers=workers, batch_size=batch)  # fmt: skip
            assert sum(p.quota for p in plans) == steps * batch  # the same number of steps on every rank
            assert [p.quota // batch for p in plans] == [len(range(w, steps, workers)) for w in range(workers)]
            for p in plans:
                assert len(_samples_of(p, lengths)) == p.quota
                seen.extend(_samples_of(p, lengths))
        assert seen == stream[: steps * batch * world]  # each sample at most once; the cut is the stream's tail
    if len(lengths) > 1:
        assert len({tuple(shard_order(len(lengths), seed=9, epoch=e)) for e in range(6)}) > 1


@pytest.mark.parametrize("lengths", [(8,) * 6 + (2,), (3,), (4, 1)])
def test_eval_plan_reads_every_sample_exactly_once(lengths) -> None:
    n = sum(lengths)
    for world, workers in ((1, 1), (2, 2), (3, 4)):
        for known in (lengths, None):
            seen = []
            for rank in range(world):
                for p in eval_plan(num_shards=len(lengths), num_samples=n, lengths=known, rank=rank,
                                   world_size=world, num_workers=workers):  # fmt: skip
                    seen.extend(_samples_of(p, lengths))
            assert sorted(seen) == [(s, i) for s in range(len(lengths)) for i in range(lengths[s])]


def test_more_ranks_times_workers_than_shards(data) -> None:
    """3 shards, 2 ranks x 3 workers: exact with shard lengths; with a count only, each pair loops over its shard."""
    split = resolve_shards(str(data["shards"]), "train", pattern="digits-train-{000000..000002}.tar")
    assert split.lengths == (8, 8, 8) and split.num_samples == 24
    count_only = resolve_shards(str(data["shards"]), "train", pattern="digits-train-{000000..000002}.tar",
                                num_samples=30)  # fmt: skip
    assert count_only.lengths is None  # the recipe's count wins over lengths that disagree with it
    for sp, expected_steps in ((split, 24 // 6), (count_only, 30 // 6)):
        source = WdsSource(sp, CLASSES, shuffle_buffer=4)
        per_rank = []
        loaders = [source.loader(batch_size=3, train=True, num_workers=3, seed=2, rank=r, world_size=2) for r in (0, 1)]
        for loader in loaders:  # two loaders of one source, each with its own rank
            batches = _epoch(loader, 1)
            assert len(batches) == len(loader) == expected_steps and all(len(b) == 3 for b in batches)
            per_rank.append(_flat(batches))
        if sp.lengths is not None:  # disjoint and complete: 24 = 2 ranks x 4 steps x 3
            assert sum(per_rank, collections.Counter()) == _flat([[(d, k) for d, k in _raw_digests(source)]])


def _raw_digests(source: WdsSource) -> list[tuple[str, int]]:
    loader = source.loader(batch_size=1, train=False)
    return [_digest(x[0], y[0]) for x, y in loader]


# ------------------------------------------------------------------------------------------ two gloo processes
class _Recording:
    """The loader as the engine sees it, noting every sample that goes by."""

    def __init__(self, loader) -> None:
        self.loader, self.seen = loader, []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for images, targets in self.loader:
            self.seen += [_digest(x, y) for x, y in zip(images, targets)]
            yield images, targets


def _rank_main(rank: int, port: int, recipe, out: Path) -> None:
    """One DDP rank (a forked child: no second import of torch and timm), training a linear model for 2 epochs."""
    import os
    import traceback

    import torch.distributed as tdist
    from torch import nn

    from timm_recipes.train.engine import evaluate, train_one_epoch
    from timm_recipes.train.schedules import create_scheduler

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    try:
        torch.manual_seed(0)
        with Distributed.from_env("cpu", timeout_s=60) as dist:
            data = build_datasets(recipe)
            loader = create_train_loader(recipe, data, dist, CPU, None)
            model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
            ddp = dist.wrap(model, CPU)  # a real all-reduce every step: unequal step counts would hang here
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            sched = create_scheduler("cosine", opt, 2 * len(loader))
            result, step = {"len": len(loader), "steps": [], "train": []}, 0
            for epoch in (0, 1):
                loader.set_epoch(epoch)
                recording = _Recording(loader)
                loss = nn.CrossEntropyLoss()
                step = train_one_epoch(ddp, recording, loss, opt, sched, device=CPU, epoch=epoch + 1,
                                       start_step=step, reduce_sum=dist.reduce_sum)["step"]  # fmt: skip
                result["steps"].append(step)
                result["train"].append(recording.seen)
            val = _Recording(create_eval_loader(recipe, data.val, dist, CPU))
            result["val"] = evaluate(model, val, device=CPU, reduce_sum=dist.reduce_sum)["n"]
            everyone = [None] * dist.world_size
            tdist.all_gather_object(everyone, val.seen)
            result["val_all"] = [s for part in everyone for s in part]
        out.write_text(json.dumps(result))
    except BaseException:
        out.with_suffix(".err").write_text(traceback.format_exc())
        os._exit(1)
    os._exit(0)


def test_two_gloo_processes_equal_steps_and_exact_evaluation(data, tmp_path) -> None:
    """7 shards (8,8,8,8,8,8,2), 2 ranks x 2 workers x batch 4, through the builders and the real engine."""
    import multiprocessing
    import socket

    recipe = _recipe("wds", data["shards"], **{"data.batch_size": 4, "data.num_workers": 2})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fork = multiprocessing.get_context("fork")
    procs = [fork.Process(target=_rank_main, args=(r, port, recipe, tmp_path / f"rank{r}.json")) for r in (0, 1)]
    for p in procs:
        p.start()
    for r, p in enumerate(procs):
        p.join(timeout=120)
        if p.is_alive():
            p.kill()
        err = tmp_path / f"rank{r}.err"
        assert p.exitcode == 0, err.read_text() if err.exists() else f"rank {r} exit code {p.exitcode}"
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["len"] for r in ranks] == [6, 6] and [r["steps"] for r in ranks] == [[6, 12], [6, 12]]
    folder_recipe = _recipe("folder", data["folder"])
    ref = build_datasets(folder_recipe)
    folder = _flat(_epoch(create_train_loader(folder_recipe, ref, Distributed(), CPU, None), 0))
    for epoch in (0, 1):
        union = collections.Counter(tuple(s) for r in ranks for s in r["train"][epoch])
        assert sum(union.values()) == 48 and not union - folder  # 48 of the 50 images, none twice
    assert ranks[0]["train"][0] != ranks[0]["train"][1]
    assert ranks[0]["val"] == ranks[1]["val"] == 49  # every validation image counted once
    folder_val = _flat(_epoch(create_eval_loader(folder_recipe, ref.val), 0))
    assert collections.Counter(tuple(s) for s in ranks[0]["val_all"]) == folder_val


# ------------------------------------------------------------------------------------------ corrupt data
def _copy_shards(data, tmp_path) -> Path:
    out = tmp_path / "shards"
    shutil.copytree(data["shards"], out)
    return out


def test_truncated_tar_is_a_named_error_or_a_counted_skip(data, tmp_path) -> None:
    shards = _copy_shards(data, tmp_path)
    cut_in_data, cut_at_header = shards / "digits-train-000002.tar", shards / "digits-train-000004.tar"
    cut_in_data.write_bytes(cut_in_data.read_bytes()[: 512 + 100])  # inside the first member's bytes
    size = 512 + -(-len(cut_at_header.read_bytes()[512:1024].rstrip(b"\0")) // 512) * 512  # first member, padded
    cut_at_header.write_bytes(
        cut_at_header.read_bytes()[: 2 * size + 100]
    )  # inside the 3rd header: tarfile sees an end
    split = resolve_shards(str(shards), "train")
    for victim in (cut_in_data, cut_at_header):
        with pytest.raises(CorruptSampleError, match=re.escape(str(victim))):
            list(WdsSource(split, CLASSES)._read_once(WorkerPlan((Piece(split.urls.index(str(victim)), 0, 8),),
                                                                 8, 0, cycle=False), []))  # fmt: skip
    with pytest.raises(CorruptSampleError, match=r"digits-train-00000[24]\.tar"):
        _epoch(WdsSource(split, CLASSES).loader(batch_size=5, train=True), 0)
    source = WdsSource(split, CLASSES, skip_corrupt=True)
    loader = source.loader(batch_size=5, train=True)
    assert len(_epoch(loader, 0)) == 10  # the quota is still met: the run keeps its steps
    assert sorted(f.split(" ")[0] for f in loader.epoch_corrupt_files) == [str(cut_in_data), str(cut_at_header)]


def test_a_piece_inside_a_shard_starts_at_its_sample_without_reading_the_ones_before(tmp_path) -> None:
    """Samples of one, two and three members (jpg, cls, json; a sample without json): starting at sample k gives
    exactly the samples from k on, as reading the whole shard and dropping the first k."""
    import webdataset as wds

    with open(tmp_path / "mix-train-0.tar", "wb") as f, wds.TarWriter(f) as sink:
        for i in range(7):
            sample = {"__key__": f"dir/s{i}", "jpg": bytes([i]) * (700 * i + 1), "cls": str(i % 3)}
            if i % 2:
                sample["json"] = {"i": i}
            sink.write(sample)
    split = resolve_shards(str(tmp_path), "train", num_samples=7)
    source = WdsSource(split, CLASSES)
    whole = [(k, sorted(m.items())) for k, m in source._samples(split.urls[0])]
    assert [k for k, _ in whole] == [f"dir/s{i}" for i in range(7)]
    with open(split.urls[0], "rb") as f:  # the samples webdataset's own pipeline groups
        theirs = wds.tariterators.group_by_keys(wds.tariterators.tar_file_expander([{"url": "u", "stream": f}]))
        assert whole == [(t["__key__"], sorted((k, v) for k, v in t.items() if k != "__url__")) for t in theirs]
    for skip in range(9):
        assert [(k, sorted(m.items())) for k, m in source._samples(split.urls[0], skip)] == whole[skip:]
    plan = WorkerPlan((Piece(0, 3, 6),), 3, 0, cycle=False)
    assert [(key, data[0]) for _, key, data, _, _ in source._read_once(plan, [])] == [
        ("dir/s3", 3), ("dir/s4", 4), ("dir/s5", 5)]  # fmt: skip


def test_undecodable_member_is_a_named_error_or_a_counted_skip(data, tmp_path) -> None:
    import webdataset as wds

    good = Path(next(iter(ImageFolderDataset(data["folder"] / "train").samples))[0]).read_bytes()
    with open(tmp_path / "bad-train-0.tar", "wb") as f, wds.TarWriter(f) as sink:
        for i in range(6):  # the last sample is corrupt: nothing follows it to carry the report
            sink.write({"__key__": f"s{i}", "jpg": b"not a jpeg" if i == 5 else good, "cls": "1"})
    split = resolve_shards(str(tmp_path), "train", num_samples=6)
    with pytest.raises(CorruptSampleError, match=r"bad-train-0\.tar.*'s5\.jpg'"):
        _epoch(WdsSource(split, CLASSES).loader(batch_size=2, train=True), 0)
    source = WdsSource(split, CLASSES, skip_corrupt=True, shuffle_buffer=0)
    loader = source.loader(batch_size=2, train=True)
    assert len(_epoch(loader, 0)) == 3  # 5 good samples and one more to keep the steps: the quota is met
    assert loader.epoch_corrupt_files == [f"{tmp_path / 'bad-train-0.tar'}#s5"]
    evaluation = source.loader(batch_size=2, train=False)
    assert sum(len(b) for b in _epoch(evaluation, 0)) == 5  # evaluation counts the 5 good ones once
    assert evaluation.epoch_corrupt_files == [f"{tmp_path / 'bad-train-0.tar'}#s5"]


# ------------------------------------------------------------------------------------------ timm interop
def test_timm_reads_our_shards(data) -> None:
    from timm.data import create_dataset

    for split, folder in (("train", "train"), ("validation", "val")):
        ds = create_dataset("wds/digits", root=str(data["shards"]), split=split)
        got = collections.Counter(int(t) for _, t in ds)
        want = collections.Counter(ImageFolderDataset(data["folder"] / folder).targets)
        assert got == want
        images = [np.asarray(img) for img, _ in itertools.islice(iter(ds), 3)]
        assert all(im.shape == (16, 16, 3) for im in images)


def test_we_read_timm_format_shards(data, tmp_path) -> None:
    """Shards as timm's ImageNet ones: webdataset's ShardWriter, jpg + cls, _info.json, val named 'validation'."""
    import webdataset as wds

    info = {"name": "timmfmt", "splits": {}}
    for split, name in (("train", "train"), ("val", "validation")):
        samples = ImageFolderDataset(data["folder"] / split).samples
        with wds.ShardWriter(str(tmp_path / f"timmfmt-{name}-%04d.tar"), maxcount=20, verbose=0) as sink:
            for i, (path, label) in enumerate(samples):
                sink.write({"__key__": f"{name}_{i:05d}", "jpg": Path(path).read_bytes(), "cls": str(label)})
        files = sorted(p.name for p in tmp_path.glob(f"timmfmt-{name}-*.tar"))
        lengths = [min(20, len(samples) - 20 * k) for k in range(len(files))]
        info["splits"][name] = {"name": name, "num_samples": len(samples), "filenames": files, "shard_lengths": lengths}
    (tmp_path / "_info.json").write_text(json.dumps(info))
    recipe = _recipe("wds", tmp_path)
    splits = build_datasets(recipe)
    assert (len(splits.train), len(splits.val)) == (50, 49) and splits.classes == CLASSES
    folder_recipe = _recipe("folder", data["folder"])
    ref = build_datasets(folder_recipe)
    assert _flat(_epoch(create_train_loader(recipe, splits, Distributed(), CPU, None), 0)) == _flat(
        _epoch(create_train_loader(folder_recipe, ref, Distributed(), CPU, None), 0))  # fmt: skip
    raw = list(iter_raw(splits.val))
    assert len(raw) == 49 and np.array_equal(decode_image(raw[0][1]), decode_image(ref.val.samples[0][0]))


# ------------------------------------------------------------------------------------------ bad input
def _fails_before_writing(recipe, tmp_path, error, match) -> None:
    from timm_recipes.train.trainer import fit

    with pytest.raises(error, match=match):
        fit(recipe, output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_bad_input_is_refused_before_anything_is_written(data, tmp_path) -> None:
    _fails_before_writing(_recipe("wds", data["shards"], **{"data.train_shards": "nope-{0000..0003}.tar"}),
                          tmp_path, FileNotFoundError, r"data.train_shards: 4 of 4 shards do not exist")  # fmt: skip
    bare = tmp_path / "bare"
    bare.mkdir()
    for tar in data["shards"].glob("*.tar"):
        shutil.copy(tar, bare / tar.name)  # no _info.json
    _fails_before_writing(_recipe("wds", bare), tmp_path, ValueError, r"data.train_samples: the number of samples")
    _fails_before_writing(_recipe("wds", data["shards"], **{"data.image_key": "png;webp"}), tmp_path, ValueError,
                          r"data.image_key='png;webp'.*members: cls, jpg\)")  # fmt: skip
    _fails_before_writing(_recipe("wds", data["shards"], **{"data.label_key": "label"}), tmp_path, ValueError,
                          r"data.label_key='label'")  # fmt: skip
    _fails_before_writing(_recipe("hfds", data["parquet"], **{"data.image_column": "img"}), tmp_path, ValueError,
                          r"data.image_column: .* has no column 'img' \(columns: \['image', 'label'\]\)")  # fmt: skip
    bad_labels = data["base"] / "parquet-bad-labels"
    if not bad_labels.exists():
        _write_parquet(data["folder"], bad_labels, class_label=False, labels={7: 12})
    _fails_before_writing(_recipe("hfds", bad_labels), tmp_path, ValueError,
                          r"1 labels outside \[0, 10\), e.g. row 7 has 12")  # fmt: skip
    with pytest.raises(RecipeError, match=r"data\.root: data\.dataset='wds' needs data\.root"):
        apply_overrides(get_preset("demo"), {"data.dataset": "wds"})
    with pytest.raises(RecipeError, match=r"data\.image_key"):
        apply_overrides(get_preset("demo"), {"data.dataset": "wds", "data.root": "x", "data.image_key": ";"})


def test_shard_command_refuses_to_overwrite_and_names_bad_input(data, tmp_path) -> None:
    from timm_recipes.cli import main

    assert main(["shard", str(data["folder"]), "--output", str(tmp_path / "s"), "--no-progress"]) == 0
    first = {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()}
    assert main(["shard", str(data["folder"]), "--output", str(tmp_path / "again"), "--no-progress"]) == 0
    assert first == {p.name: p.read_bytes() for p in (tmp_path / "again").iterdir()}  # deterministic
    assert main(["shard", str(data["folder"]), "--output", str(tmp_path / "s"), "--no-progress"]) == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()} == first  # untouched
    assert main(["shard", str(tmp_path / "nothing"), "--output", str(tmp_path / "t"), "--no-progress"]) == 1
    assert not (tmp_path / "t").exists() and not list(tmp_path.glob(".t.tmp-*"))
    info = json.loads((tmp_path / "s" / "_info.json").read_text())
    assert info["splits"]["validation"]["shard_lengths"] == [49]  # 1000 per shard by default
    # The original bytes, not re-encoded.
    raw = {bytes(b) for _, b, _ in WdsSource(resolve_shards(str(tmp_path / "s"), "train"), CLASSES).iter_raw()}
    assert raw == {Path(p).read_bytes() for p, _ in ImageFolderDataset(data["folder"] / "train").samples}


def test_class_names_of_a_classlabel_become_the_label_names(data) -> None:
    recipe = _recipe("hfds", data["parquet"])
    assert source_classes(recipe) == [f"digit {c}" for c in CLASSES]
    assert source_classes(_recipe("wds", data["shards"])) == CLASSES
    val = build_split(recipe, "val", None)
    assert [k for k, _, _ in itertools.islice(val.iter_raw(), 2)] == ["row 0", "row 1"]


def test_hub_dataset_through_hf_endpoint(data, hub_server) -> None:
    """A parquet dataset repo uploaded with the real huggingface_hub client, read back by ``datasets`` over HTTP."""
    from huggingface_hub import HfApi

    from timm_recipes.hub.runs import dataset_classes

    repo = f"{hub_server.state.orgs[0]}/digits-parquet"
    api = HfApi(token=hub_server.state.token)
    api.create_repo(repo, repo_type="dataset", exist_ok=True)
    api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=str(data["parquet"]), path_in_repo="data")
    recipe = _recipe("hfds", repo)
    splits = build_datasets(recipe)
    assert (len(splits.train), len(splits.val)) == (50, 49)
    assert dataset_classes(recipe) == splits.classes == [f"digit {c}" for c in CLASSES]  # the export's label names
    folder_recipe = _recipe("folder", data["folder"])
    ref = build_datasets(folder_recipe)
    assert _flat(_epoch(create_eval_loader(recipe, splits.val), 0)) == _flat(
        _epoch(create_eval_loader(folder_recipe, ref.val), 0)
    )
    assert any(r.path.startswith(f"/datasets/{repo}/resolve/") for r in hub_server.state.requests)


def test_local_imagefolder_and_save_to_disk_directories(data, tmp_path) -> None:
    """``datasets``' imagefolder layout (our folder itself) and a ``save_to_disk`` directory: the same raw bytes."""
    import datasets

    recipe = _recipe("hfds", data["folder"])
    val = build_split(recipe, "val", None)  # imagefolder names the val/ folder's split "validation"
    assert val.classes == CLASSES and len(val) == 49
    folder_bytes = collections.Counter(
        Path(p).read_bytes() for p, _ in ImageFolderDataset(data["folder"] / "val").samples
    )
    assert collections.Counter(bytes(b) for _, b, _ in val.iter_raw()) == folder_bytes
    datasets.DatasetDict({"validation": val.ds}).save_to_disk(str(tmp_path / "saved"))
    saved = build_split(_recipe("hfds", tmp_path / "saved"), "val", None)
    assert collections.Counter(bytes(b) for _, b, _ in saved.iter_raw()) == folder_bytes
    assert list(saved.targets) == list(val.targets)
    with pytest.raises(FileNotFoundError, match=r"data\.train_split: .*no split 'nope' \(splits: \['validation'\]\)"):
        build_split(_recipe("hfds", tmp_path / "saved", **{"data.train_split": "nope"}), "train", None)


def test_shards_from_fsspec_urls(data) -> None:
    """Shards and _info.json behind a URL that fsspec opens (its in-memory file system stands in for object storage)."""
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in data["shards"].iterdir():
        memory.pipe(f"/wds-bucket/{path.name}", path.read_bytes())
    remote = build_split(_recipe("wds", "memory://wds-bucket"), "train", None)
    assert remote.split.urls[0].startswith("memory://wds-bucket/") and remote.split.lengths == (8,) * 6 + (2,)
    local = build_split(_recipe("wds", data["shards"]), "train", None)
    assert [(label, bytes(b)) for _, b, label in remote.iter_raw()] == [
        (label, bytes(b)) for _, b, label in local.iter_raw()
    ]
