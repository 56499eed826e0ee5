"""The workers' report (shardline_kernels/report.py) over a small torch model with
vLLM's MoE layer shape faked: experts held (weights), mapped (expert map), int8 weights."""

import torch

from shardline_kernels.report import model_report


class FakeMapManager:
    def __init__(self, total, ep_size, ep_rank):
        self.global_num_experts, self.ep_size = total, ep_size
        local = total // ep_size
        self.local_num_experts = local
        if ep_size == 1:
            self.expert_map = None
        else:
            self.expert_map = torch.full((total,), -1, dtype=torch.int32)
            self.expert_map[ep_rank * local : (ep_rank + 1) * local] = torch.arange(local, dtype=torch.int32)


class FakeExperts(torch.nn.Module):
    def __init__(self, total, ep_size, ep_rank=0):
        super().__init__()
        self.expert_map_manager = FakeMapManager(total, ep_size, ep_rank)
        local = total // ep_size
        self.w13_weight = torch.nn.Parameter(torch.zeros(local, 6, 3), requires_grad=False)


def test_an_expert_parallel_rank_reports_its_share_of_the_experts():
    model = torch.nn.Sequential(FakeExperts(4, 2, ep_rank=1), FakeExperts(4, 2, ep_rank=1))
    report = model_report(model)
    assert report["experts"] == [{"held": 2, "mapped": 2, "total": 4, "ep_size": 2}] * 2


def test_without_expert_parallelism_a_rank_holds_every_expert():
    assert model_report(FakeExperts(4, 1))["experts"] == [{"held": 4, "mapped": 4, "total": 4, "ep_size": 1}]


def test_int8_weights_are_counted_and_float_ones_are_not():
    model = torch.nn.Linear(4, 4)
    assert model_report(model) == {"experts": [], "int8_weights": 0}
    model.weight = torch.nn.Parameter(torch.zeros(4, 4, dtype=torch.int8), requires_grad=False)
    assert model_report(model)["int8_weights"] == 1
