"""Window batches: a seeded permutation per epoch, exact resume from {epoch, position}, fixed eval set."""

import json

import numpy as np
import pytest
import torch

from lightcoder.shards import open_shard
from lightcoder.train.loader import WindowLoader, epoch_order, eval_batches


def windows(n: int = 10, seq_len: int = 6) -> np.ndarray:
    return (np.arange(n * seq_len) % 60000).astype(np.uint16).reshape(n, seq_len)  # row i starts at i*seq_len


def first_ids(inputs: torch.Tensor, seq_len: int = 6) -> list[int]:
    return (inputs[:, 0] // seq_len).tolist()  # which window each row came from


def test_batches_shift_targets_by_one():
    loader = WindowLoader(windows(), 3, seed=0)
    inputs, targets = loader.next_batch()
    assert inputs.shape == targets.shape == (3, 5) and inputs.dtype == torch.int64
    assert torch.equal(inputs[:, 1:], targets[:, :-1])


def test_each_epoch_is_a_seeded_permutation_and_the_tail_is_skipped():
    loader = WindowLoader(windows(10), 3, seed=7)
    epoch0 = [i for _ in range(3) for i in first_ids(loader.next_batch()[0])]
    assert epoch0 == epoch_order(10, 7, 0)[:9].tolist()  # 3 batches of 3; window order[9] is skipped
    epoch1 = first_ids(loader.next_batch()[0])
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["position"] == 3
    assert epoch1 == epoch_order(10, 7, 1)[:3].tolist()
    assert sorted(epoch_order(10, 7, 1)) == list(range(10))
    assert epoch_order(10, 7, 0).tolist() != epoch_order(10, 7, 1).tolist()
    assert epoch_order(10, 7, 0).tolist() == epoch_order(10, 7, 0).tolist()


def test_state_round_trip_resumes_the_same_batches():
    a = WindowLoader(windows(10), 4, seed=1)
    for _ in range(5):  # across an epoch boundary
        a.next_batch()
    state = a.state_dict()
    b = WindowLoader(windows(10), 4, seed=1)
    b.load_state_dict(json.loads(json.dumps(state)))  # survives serialization
    for _ in range(6):
        xa, ya = a.next_batch()
        xb, yb = b.next_batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_state_from_other_shards_is_rejected():
    state = WindowLoader(windows(10), 4, seed=1).state_dict()
    with pytest.raises(ValueError, match="shards changed"):
        WindowLoader(windows(12), 4, seed=1).load_state_dict(state)


def test_too_few_windows_for_a_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="batch_size"):
        WindowLoader(windows(3), 4, seed=0)


def test_eval_batches_are_fixed_and_spread_over_the_split():
    batches = eval_batches(windows(20), 4, 2)
    assert [b[0].shape[0] for b in batches] == [4, 4]
    ids = [i for inputs, _ in batches for i in first_ids(inputs)]
    assert ids[0] == 0 and ids[-1] == 19 and len(set(ids)) == 8
    assert [first_ids(x) for x, _ in eval_batches(windows(20), 4, 2)] == [first_ids(x) for x, _ in batches]
    assert [b[0].shape[0] for b in eval_batches(windows(5), 4, 3)] == [4, 1]  # small split: all of it
    assert eval_batches(np.zeros((0, 6), np.uint16), 4, 2) == []


def test_reads_real_packed_shards(tmp_path):
    data = windows(8, 16)
    data.tofile(tmp_path / "train.bin")
    index = {"seq_len": 16, "dtype": "uint16", "vocab_size": 60000,
             "splits": {"train": {"file": "train.bin", "num_windows": 8, "num_tokens": 128, "num_documents": 1}}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    (tmp_path / "DONE").write_text(json.dumps(index))
    loader = WindowLoader(open_shard(tmp_path, "train"), 2, seed=0)
    inputs, targets = loader.next_batch()
    rows = epoch_order(8, 0, 0)[:2]
    assert torch.equal(inputs, torch.from_numpy(data[rows, :-1].astype(np.int64)))
    assert torch.equal(targets, torch.from_numpy(data[rows, 1:].astype(np.int64)))


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_read_disjoint_slices_that_make_up_the_one_rank_batch(world_size):
    single = WindowLoader(windows(40), 8, seed=5)
    ranks = [WindowLoader(windows(40), 8, seed=5, rank=r, world_size=world_size) for r in range(world_size)]
    for _ in range(12):  # crosses epoch boundaries (5 batches per epoch)
        whole = first_ids(single.next_batch()[0])
        parts = [first_ids(loader.next_batch()[0]) for loader in ranks]
        assert [i for part in parts for i in part] == whole
        assert all(len(part) == 8 // world_size for part in parts)
    assert all(loader.state_dict() == single.state_dict() for loader in ranks)  # the state is global


def test_global_batch_must_split_over_the_ranks():
    with pytest.raises(ValueError, match="divisible by the 3 ranks"):
        WindowLoader(windows(40), 8, seed=0, rank=0, world_size=3)


def test_stream_order_puts_consecutive_windows_of_a_repository_in_one_row():
    streams = [[0, 7], [7, 5], [12, 9], [21, 3], [24, 16]]  # 40 windows in 5 repositories
    loader = WindowLoader(windows(40), 4, seed=3, streams=streams)
    steps = [first_ids(loader.next_batch()[0]) for _ in range(loader.batches_per_epoch)]
    rows = list(zip(*steps))  # the window sequence each batch row sees
    starts = {first for first, _ in streams}
    for row in rows:
        for prev, cur in zip(row, row[1:]):
            assert cur == prev + 1 or cur in starts  # the next window of the stream, or a new stream
    seen = [i for step in steps for i in step]
    assert len(seen) == len(set(seen)) == 40  # each window once per epoch
    state = loader.state_dict()
    again = WindowLoader(windows(40), 4, seed=3, streams=streams)
    again.load_state_dict(state)
    assert torch.equal(again.next_batch()[0], loader.next_batch()[0])  # exact resume, next epoch


def test_bad_streams_are_named():
    with pytest.raises(ValueError, match="overlap at window 5"):
        WindowLoader(windows(10), 2, seed=0, streams=[[0, 6], [5, 2]])
    with pytest.raises(ValueError, match=r"stream \[8, 4\] of the train split lies outside its 10 windows"):
        WindowLoader(windows(10), 2, seed=0, streams=[[8, 4]])
    loader = WindowLoader(windows(10), 2, seed=0, streams=[[2, 3]])  # uncovered windows become single streams
    assert sorted(i for _ in range(5) for i in first_ids(loader.next_batch()[0])) == list(range(10))
