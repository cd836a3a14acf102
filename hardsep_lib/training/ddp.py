"""Small DDP helpers that also work, as no-ops, in a single process."""

import torch
import torch.distributed as dist


def is_distributed():
    """True inside an initialised torch.distributed process group."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world():
    """(this process's rank, number of processes); (0, 1) without DDP."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj):
    """[obj of rank 0, obj of rank 1, ...] on every rank; [obj] without DDP."""
    if not is_distributed():
        return [obj]
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


def gather_floats(values, capacity):
    """[values of rank 0, values of rank 1, ...] (lists of floats) on every rank.

    One tensor all_gather of ``capacity + 1`` floats per rank (count + values, NaN-padded):
    several times cheaper than all_gather_object's pickling, which matters once per optimiser
    step. ``capacity`` bounds the number of values any rank sends.
    """
    if not is_distributed():
        return [list(values)]
    packed = torch.full((capacity + 1,), float("nan"), dtype=torch.float64)
    packed[0] = len(values)
    packed[1:len(values) + 1] = torch.as_tensor(values, dtype=torch.float64)
    parts = [torch.empty_like(packed) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, packed)
    return [part[1:int(part[0]) + 1].tolist() for part in parts]


def sum_over_ranks(values):
    """Element-wise sum of a list of numbers over all ranks."""
    tensor = torch.tensor(values, dtype=torch.float64)
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor.tolist()


class ShardSampler(torch.utils.data.Sampler):
    """Indices rank, rank + W, rank + 2W, ... of a dataset of ``size`` items (W processes).

    Unlike DistributedSampler it never pads with repeated items, so validation and test
    metrics gathered over ranks count every mixture exactly once.
    """

    def __init__(self, size):
        self.size = size

    def __iter__(self):
        rank, world = rank_and_world()
        return iter(range(rank, self.size, world))

    def __len__(self):
        rank, world = rank_and_world()
        return len(range(rank, self.size, world))
