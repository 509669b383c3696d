"""The three tutorial networks, each in up to three implementations.

    net        tutorial                                      T    batch  loss
    lif_fc     SpikingJelly lif_fc_mnist                     100  128    MSE(out rate, one-hot)
    tutorial5  snnTorch tutorial 5                           25   128    sum_t CE(mem_t, y)
    dense_if   from-scratch surrogate-gradient tutorial      100  500    NLL(log_softmax(mean rate))

    impl       what it is
    reference  the tutorial's per-step Python loop on snn_cuda's reference neurons
               (backend="torch", step_mode="s"), one Linear call per step, torch.rand Poisson
               encoding per step
    fused      multi-step layers: Linear once over [T*B, ...] (SeqToANN), each neuron layer one
               fused op over the whole sequence, the fused Poisson encoder, and for tutorial5 /
               dense_if's input layer the constant-input form layer(x, T=n) (docs/neuron_semantics.md, constant input)
    peer       the tutorial's own code on its library (SpikingJelly 2.0.0 / snnTorch 1.0);
               dense_if has no peer

Every implementation exposes ``linears()`` (its nn.Linear modules in a fixed order) so all start
from the same weights (``init_weights`` + ``load_weights``), and ``forward(img)`` on a batch of
images ``[B, 1, 28, 28]`` in [0, 1] returning what ``NETS[net].loss`` / ``.predict`` take.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

import snn_cuda
from snn_cuda import surrogate as sg
from snn_cuda.functional import reset_net

IMPLS = ("reference", "fused", "peer")


# ---------------------------------------------------------------------------------------------
# Net descriptions: hyper-parameters, loss, prediction, initial weights
# ---------------------------------------------------------------------------------------------
@dataclass
class NetSpec:
    name: str
    T: int
    batch_size: int
    lr: float
    betas: tuple
    loss: Callable
    predict: Callable
    init: Callable  # (generator-seeded) -> list of nn.Linear
    peer_lib: Optional[str]
    describe: str


def _lif_fc_loss(out, y):
    return F.mse_loss(out, F.one_hot(y, 10).to(out.dtype))


def _tutorial5_loss(out, y):
    _, mem = out
    # snnTorch tutorial 5: loss_val = sum over steps of CrossEntropy(mem_rec[step], targets)
    loss = torch.zeros((), dtype=mem.dtype, device=mem.device)
    for step in range(mem.shape[0]):
        loss = loss + F.cross_entropy(mem[step], y)
    return loss


def _tutorial5_loss_fused(out, y):
    # The same sum over steps in one call: mean over T*B times T = sum_t mean_B.
    _, mem = out
    T = mem.shape[0]
    return F.cross_entropy(mem.flatten(0, 1), y.repeat(T)) * T


def _dense_if_loss(out, y):
    # NLL on the log-softmax of the mean output firing rate (the plain log of the rate is -inf
    # for a silent output neuron).
    return F.nll_loss(F.log_softmax(out, dim=1), y)


def _rate_predict(out):
    return out.argmax(1)


def _tutorial5_predict(out):
    spk, _ = out
    return spk.sum(0).argmax(1)  # the tutorial: predicted = spk_rec.sum(dim=0).max(1)


def _init_lif_fc():
    return [nn.Linear(28 * 28, 10, bias=False)]


def _init_tutorial5():
    return [nn.Linear(28 * 28, 1000), nn.Linear(1000, 10)]


DENSE_IF_SIZES = (28 * 28, 256, 256, 10)


def _init_dense_if():
    lins = []
    for fan_in, fan_out in zip(DENSE_IF_SIZES[:-1], DENSE_IF_SIZES[1:]):
        lin = nn.Linear(fan_in, fan_out, bias=False)
        with torch.no_grad():
            lin.weight.normal_(0.0, 2.0 / math.sqrt(fan_in))
        lins.append(lin)
    return lins


NETS = {
    "lif_fc": NetSpec(
        "lif_fc",
        100,
        128,
        1e-3,
        (0.9, 0.999),
        _lif_fc_loss,
        _rate_predict,
        _init_lif_fc,
        "spikingjelly",
        "784-10 LIF(tau=2, ATan), Poisson input, MSE on rate",
    ),
    "tutorial5": NetSpec(
        "tutorial5",
        25,
        128,
        5e-4,
        (0.9, 0.999),
        _tutorial5_loss,
        _tutorial5_predict,
        _init_tutorial5,
        "snntorch",
        "784-1000-10 Leaky(beta=0.95), constant current, sum_t CE(mem)",
    ),
    "dense_if": NetSpec(
        "dense_if",
        100,
        500,
        1e-3,
        (0.9, 0.999),
        _dense_if_loss,
        _rate_predict,
        _init_dense_if,
        None,
        "IF input + 784-256-256-10 Linear->syn current(e^-1)->IF(floor 0), NLL(log_softmax(rate))",
    ),
}


def init_weights(net: str, seed: int) -> List[torch.Tensor]:
    """The initial weights of ``net`` (a list of state dicts, one per Linear) from ``seed``."""
    torch.manual_seed(seed)
    return [{k: v.detach().clone() for k, v in lin.state_dict().items()} for lin in NETS[net].init()]


def load_weights(model: nn.Module, weights) -> None:
    lins = model.linears()
    assert len(lins) == len(weights), (len(lins), len(weights))
    for lin, sd in zip(lins, weights):
        lin.load_state_dict(sd)


def peer_available(net: str) -> str:
    """'' when the peer of ``net`` can run, else why not."""
    lib = NETS[net].peer_lib
    if lib is None:
        return f"no peer library implements {net} (the tutorial is plain PyTorch)"
    if importlib.util.find_spec(lib) is None:
        return f"{lib} is not installed (pip install --no-deps -r benchmarks/requirements-peers.txt)"
    try:
        if lib == "spikingjelly":
            from spikingjelly.activation_based import neuron  # noqa: F401
        else:
            import snntorch  # noqa: F401
    except Exception as e:  # a broken install is a skip, not a crash
        return f"{lib} does not import: {type(e).__name__}: {e}"
    return ""


def fused_available(device: torch.device) -> str:
    return snn_cuda._ext.unavailable_reason(torch.device(device).type) or ""


def loss_fn(net: str, impl: str):
    if net == "tutorial5" and impl == "fused":
        return _tutorial5_loss_fused
    return NETS[net].loss


# ---------------------------------------------------------------------------------------------
# lif_fc (SpikingJelly lif_fc_mnist)
# ---------------------------------------------------------------------------------------------
class LifFcReference(nn.Module):
    """The tutorial's loop: for t in range(T): out_fr += net(encoder(img))."""

    def __init__(self, T: int):
        super().__init__()
        self.T = T
        self.layer = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28, 10, bias=False),
            snn_cuda.LIF(tau=2.0, surrogate=sg.ATan(), step_mode="s", backend="torch"),
        )

    def linears(self):
        return [self.layer[1]]

    def forward(self, img):
        reset_net(self)
        out_fr = 0.0
        for _ in range(self.T):
            encoded = (torch.rand_like(img) < img).to(img.dtype)  # Poisson encoding, per step
            out_fr = out_fr + self.layer(encoded)
        return out_fr / self.T


class LifFcFused(nn.Module):
    """Encoder over all T at once, Linear once over [T*B, 784], one fused LIF op."""

    def __init__(self, T: int):
        super().__init__()
        self.encoder = snn_cuda.PoissonEncoder(T)
        # SpikeLinear: nn.Linear that saves its input as uint8 for backward; binary=True says the
        # encoder's output is 0/1 (never checked: a check would sync a GPU every step).
        self.fc = snn_cuda.SeqToANN(nn.Flatten(), snn_cuda.SpikeLinear(28 * 28, 10, bias=False, binary=True))
        self.lif = snn_cuda.LIF(tau=2.0, surrogate=sg.ATan(), step_mode="m", backend="fused")

    def linears(self):
        return [self.fc[1]]

    def forward(self, img):
        reset_net(self)
        return self.lif(self.fc(self.encoder(img))).mean(0)


class LifFcPeer(nn.Module):
    """SpikingJelly 2.0.0, as lif_fc_mnist.py writes it (single-step modules, Python loop)."""

    def __init__(self, T: int):
        super().__init__()
        from spikingjelly.activation_based import encoding, layer, neuron, surrogate

        self.T = T
        self.layer = nn.Sequential(
            layer.Flatten(),
            layer.Linear(28 * 28, 10, bias=False),
            neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan()),
        )
        self.encoder = encoding.PoissonEncoder()

    def linears(self):
        return [self.layer[1]]

    def forward(self, img):
        from spikingjelly.activation_based import functional

        functional.reset_net(self.layer)
        out_fr = 0.0
        for _ in range(self.T):
            out_fr = out_fr + self.layer(self.encoder(img))
        return out_fr / self.T


# ---------------------------------------------------------------------------------------------
# tutorial5 (snnTorch tutorial 5)
# ---------------------------------------------------------------------------------------------
class Tutorial5Reference(nn.Module):
    """The tutorial's loop: fc1(x) recomputed at every step, Leaky stepped with explicit mem."""

    def __init__(self, T: int, beta: float = 0.95):
        super().__init__()
        self.T = T
        self.fc1 = nn.Linear(28 * 28, 1000)
        self.lif1 = snn_cuda.Leaky(beta=beta, step_mode="s", backend="torch")
        self.fc2 = nn.Linear(1000, 10)
        self.lif2 = snn_cuda.Leaky(beta=beta, step_mode="s", backend="torch")

    def linears(self):
        return [self.fc1, self.fc2]

    def forward(self, img):
        x = img.flatten(1)
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for _ in range(self.T):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


class Tutorial5Fused(nn.Module):
    """fc1 once; the hidden Leaky over the constant current for T steps with fc2 applied to its
    spikes in the same op (NeuronLinear: the [T, B, 1000] spikes exist only as bytes)."""

    def __init__(self, T: int, beta: float = 0.95):
        super().__init__()
        self.T = T
        self.fc1 = nn.Linear(28 * 28, 1000)
        # The hidden membrane feeds no loss: never materialised (checkpoints only).
        self.hidden = snn_cuda.NeuronLinear(
            snn_cuda.Leaky(beta=beta, step_mode="m", backend="fused", return_mem=False), snn_cuda.SpikeLinear(1000, 10)
        )
        self.lif2 = snn_cuda.Leaky(beta=beta, step_mode="m", backend="fused")

    def linears(self):
        return [self.fc1, self.hidden.linear]

    def forward(self, img):
        reset_net(self)
        cur1 = self.fc1(img.flatten(1))  # [B, 1000], once
        cur2 = self.hidden(cur1, T=self.T)  # [T, B, 10]: Leaky over T steps, then fc2
        spk2, mem2 = self.lif2(cur2)
        return spk2, mem2


class Tutorial5Peer(nn.Module):
    """snnTorch 1.0, tutorial 5's Net verbatim."""

    def __init__(self, T: int, beta: float = 0.95):
        super().__init__()
        import snntorch as snn

        self.T = T
        self.fc1 = nn.Linear(28 * 28, 1000)
        self.lif1 = snn.Leaky(beta=beta)
        self.fc2 = nn.Linear(1000, 10)
        self.lif2 = snn.Leaky(beta=beta)

    def linears(self):
        return [self.fc1, self.fc2]

    def forward(self, img):
        x = img.view(img.shape[0], -1)
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for _ in range(self.T):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


# ---------------------------------------------------------------------------------------------
# dense_if (from-scratch surrogate-gradient tutorial)
# ---------------------------------------------------------------------------------------------
SYN_DECAY = math.exp(-1.0)
INPUT_GAIN, INPUT_BIAS = 1.0, 0.0


def _dense_if_neuron(step_mode, backend):
    # rectified IF: floor 0, threshold 1, hard reset to 0, reset detached, fast sigmoid slope 100
    return snn_cuda.IF(
        v_threshold=1.0,
        v_reset=0.0,
        v_floor=0.0,
        detach_reset=True,
        surrogate=sg.FastSigmoid(slope=100.0),
        step_mode=step_mode,
        backend=backend,
    )


class DenseIFReference(nn.Module):
    """Per step: input IF on gain*pixel+bias, then per layer Linear -> synaptic current -> IF."""

    def __init__(self, T: int, sizes=DENSE_IF_SIZES):
        super().__init__()
        self.T = T
        self.inp = _dense_if_neuron("s", "torch")
        self.fcs = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))
        self.syns = nn.ModuleList(snn_cuda.SynapticCurrent(SYN_DECAY, step_mode="s", backend="torch") for _ in self.fcs)
        self.ifs = nn.ModuleList(_dense_if_neuron("s", "torch") for _ in self.fcs)

    def linears(self):
        return list(self.fcs)

    def forward(self, img):
        reset_net(self)
        cur = INPUT_GAIN * img.flatten(1) + INPUT_BIAS
        count = 0.0
        for _ in range(self.T):
            s = self.inp(cur)
            for fc, syn, neuron in zip(self.fcs, self.syns, self.ifs):
                s = neuron(syn(fc(s)))
            count = count + s
        return count / self.T


class DenseIFFused(nn.Module):
    """Input IF in the constant-input form; per layer: Linear once over [T*B, ...], the
    synaptic current and the IF each one fused op over the sequence."""

    def __init__(self, T: int, sizes=DENSE_IF_SIZES):
        super().__init__()
        self.T = T
        self.inp = _dense_if_neuron("m", "fused")
        self.fcs = nn.ModuleList(
            # Every layer's input is IF spikes (0/1): saved as bytes.
            snn_cuda.SeqToANN(snn_cuda.SpikeLinear(a, b, bias=False, binary=True))
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.syns = nn.ModuleList(snn_cuda.SynapticCurrent(SYN_DECAY, step_mode="m", backend="fused") for _ in self.fcs)
        self.ifs = nn.ModuleList(_dense_if_neuron("m", "fused") for _ in self.fcs)
        for neuron in self.ifs:
            # Its input (the synaptic current sequence) is kept for the synapse's own
            # backward anyway: re-reading it beats saving every charged potential.
            neuron.backward_storage = "checkpoint"

    def linears(self):
        return [fc[0] for fc in self.fcs]

    def forward(self, img):
        reset_net(self)
        s = self.inp(INPUT_GAIN * img.flatten(1) + INPUT_BIAS, T=self.T)  # [T, B, 784]
        for fc, syn, neuron in zip(self.fcs, self.syns, self.ifs):
            s = neuron(syn(fc(s)))
        return s.mean(0)


MODELS = {
    ("lif_fc", "reference"): LifFcReference,
    ("lif_fc", "fused"): LifFcFused,
    ("lif_fc", "peer"): LifFcPeer,
    ("tutorial5", "reference"): Tutorial5Reference,
    ("tutorial5", "fused"): Tutorial5Fused,
    ("tutorial5", "peer"): Tutorial5Peer,
    ("dense_if", "reference"): DenseIFReference,
    ("dense_if", "fused"): DenseIFFused,
}


def build(net: str, impl: str, T: int, weights) -> nn.Module:
    model = MODELS[(net, impl)](T)
    load_weights(model, weights)
    return model
