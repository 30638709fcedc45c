"""TrainConfig: every knob of `lightcoder.train.loop.train`, validated on construction.

Budgets (all 0 = no limit; when all three are 0 the run is one pass over the train split):
- `max_steps`: optimizer steps.
- `max_tokens`: training tokens (batch_size * (seq_len - 1) per step, the positions that get a loss).
`batch_size` is the global batch in windows; under torchrun each of the W ranks trains
batch_size / W windows per step, in `grad_accum` micro-batches of batch_size / (W * grad_accum).
- `max_minutes`: wall-clock minutes of training (evals and checkpoints included, summed over resumes).
  With the default "wsd" schedule the learning rate holds its peak until 1 - decay_fraction of the
  minutes have passed; the decay's length is then fixed from the median recent step time (a busy
  moment before it costs only its own length). With "cosine" the total is planned once after timing
  `plan_after_steps` steps. Either plan is stored in train_state.pt, so a resumed run follows it
  (train/budget.py); the run stops when the plan is reached, or earlier if the wall budget runs out.
The LR schedule (linear warmup, then wsd or cosine to `min_lr`) spans the run's total steps, or
`schedule_steps` when that is > 0. Set `schedule_steps` to make the schedule independent of the budget,
e.g. to stop at step k and later resume to step N with the same learning rates as one straight N-step run.

Example: TrainConfig(batch_size=8, lr=1e-3, max_minutes=5, dtype="bf16")
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

DTYPES = ("auto", "bf16", "fp32")
SCHEDULES = ("wsd", "cosine")
DEVICES = ("auto", "cpu", "cuda")
PARALLEL_MODES = ("fsdp", "ddp")
EXPORT_HF = ("all", "final")
OPTIMIZERS = ("adamw", "muon")
ATTENTION_IMPLS = ("auto", "sdpa", "blocks", "flex")  # = lightcoder.model.llama.ATTENTION_IMPLS (import-light)


@dataclass(kw_only=True)
class TrainConfig:
    batch_size: int = 4  # windows per optimizer step, over all ranks: micro-batch x grad_accum x world size
    grad_accum: int = 1  # micro-batches per rank per optimizer step (gradients summed before the step)
    lr: float = 2e-3  # peak learning rate (after warmup)
    min_lr: float = 2e-4  # cosine floor
    warmup_steps: int = 20
    weight_decay: float = 0.1  # on matrices only; not on norms or embeddings
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    # "adamw", or "muon": Muon on the blocks' weight matrices and AdamW on embeddings, head and norms
    # (train/muon.py), at the same lr and weight decay
    optimizer: str = "adamw"
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    max_steps: int = 0
    max_tokens: int = 0
    max_minutes: float = 0.0
    schedule_steps: int = 0  # > 0: the LR schedule's length, independent of the budget (see docstring)
    # "wsd": peak LR, then a linear decay over the last decay_fraction (of the steps, or of max_minutes,
    # decided from the clock: train/budget.py); "cosine": cosine to min_lr, a max_minutes run planned once
    schedule: str = "wsd"
    decay_fraction: float = 0.2
    plan_after_steps: int = 20  # cosine with max_minutes: steps timed (after a warm-up) to plan the total
    eval_every: int = 100  # steps between validation losses; 0 = only at the start and the end
    eval_batches: int = 4  # fixed batches of the valid split per validation
    ckpt_every: int = 500  # steps between checkpoints; 0 = only step 0 and the end
    keep_checkpoints: int = 2  # newest checkpoints kept (step_000000 is never deleted)
    log_every: int = 10  # steps between metrics.jsonl lines (the only host syncs in the loop)
    seed: int = 0
    # autocast dtype for matmuls; master weights and optimizer state stay fp32. "auto": bf16 where this
    # device multiplies bf16 fast, else fp32 (train/precision.py: a CPU without bf16 units is 25x slower in it)
    dtype: str = "auto"
    device: str = "auto"  # "auto" = cuda when available, else cpu
    num_threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default (all cores)
    compile: bool = False  # torch.compile each block (faster steps after a slow first one)
    parallel: str = "fsdp"  # data parallelism under torchrun: "fsdp" (FSDP2 fully_shard) or "ddp"
    activation_checkpointing: bool = False  # recompute block activations in backward (saves memory)
    document_mask: bool = True  # block-causal attention: tokens attend only within their own document
    # context-level FIM windows (pack.mix.level "context"): False = loss on the middle and </s> only (the
    # prompt conditions, as at inference); True = also on the prompt's tokens, as document-level FIM does
    fim_prompt_loss: bool = False
    # loss weight of every `</s>` target (the end of a FIM middle or a document) against 1 for other
    # tokens; the mean still divides by the number of targets. A weight w moves the converged p(</s>) odds
    # by a factor w, and gives the stop decision w times the gradient. Validation loss stays unweighted.
    # 1 (plain cross-entropy) by measurement (docs/training.md): with greedy decoding alone 2 stopped more
    # often, but with the eval's frequency penalty (which ends the loops 1 ran into) 1 sizes blocks better
    stop_loss_weight: float = 1.0
    # attention kernel: "auto" (CPU: our block-causal matmul kernel for windows whose saved probabilities
    # fit 256 MB per layer, else SDPA; GPU: SDPA), "sdpa", "blocks" (force the CPU kernel), "flex"
    # (FlexAttention BlockMasks, CUDA)
    attention: str = "auto"
    stream_order: bool = False  # consecutive windows of a repository to consecutive steps of one batch row
    spike_factor: float = 3.0  # report a loss spike when a step's loss > factor x its running mean; 0 = off
    tensorboard: bool = True  # also write TensorBoard event files to RUN/tensorboard
    peak_tflops: float = 0.0  # per-device peak for MFU; 0 = measure the matmul peak at start
    export_hf: str = "all"  # HF weights in "all" checkpoints, or only step 0 and the "final" one
    # fine-tuning (`lightcoder finetune --method full`): an HF Llama dir whose weights replace the seeded
    # init at step 0 (the model config must match it); "" = train from scratch
    init_from: str = ""

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # JSON round trips give a list
        _positive = ("batch_size", "grad_accum", "log_every", "plan_after_steps", "keep_checkpoints")
        for name in _positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be > 0, got {getattr(self, name)}")
        _non_negative = ("min_lr", "warmup_steps", "weight_decay", "grad_clip", "max_steps", "max_tokens",
                         "max_minutes", "schedule_steps", "eval_every", "eval_batches", "ckpt_every",
                         "num_threads", "seed", "spike_factor", "peak_tflops")
        for name in _non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"train.decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.stop_loss_weight <= 0:
            raise ValueError(f"train.stop_loss_weight must be > 0 (1 = unweighted), got {self.stop_loss_weight}")
        if self.min_lr > self.lr:
            raise ValueError(f"train.min_lr ({self.min_lr}) must be <= train.lr ({self.lr}); lower min_lr")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"train.betas must be two numbers in [0, 1), got {self.betas}")
        if self.eps <= 0:
            raise ValueError(f"train.eps must be > 0, got {self.eps}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"train.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.parallel not in PARALLEL_MODES:
            raise ValueError(f"train.parallel must be one of {PARALLEL_MODES}, got {self.parallel!r}")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"train.attention must be one of {ATTENTION_IMPLS}, got {self.attention!r}")
        if self.export_hf not in EXPORT_HF:
            raise ValueError(f"train.export_hf must be one of {EXPORT_HF}, got {self.export_hf!r}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"train.batch_size ({self.batch_size}) must be divisible by train.grad_accum "
                             f"({self.grad_accum})")
        if self.device not in DEVICES:
            raise ValueError(f"train.device must be one of {DEVICES}, got {self.device!r}")

    def to_dict(self) -> dict:
        return asdict(self)


# Fields that change the numbers a resumed run computes; a resume with a different value warns.
RESUME_SENSITIVE = ("batch_size", "lr", "min_lr", "warmup_steps", "weight_decay", "betas", "eps",
                    "grad_clip", "schedule_steps", "seed", "dtype", "document_mask", "stream_order",
                    "fim_prompt_loss", "schedule", "decay_fraction", "stop_loss_weight", "optimizer")

__all__ = ["TrainConfig", "DTYPES", "SCHEDULES", "DEVICES", "PARALLEL_MODES", "EXPORT_HF", "OPTIMIZERS",
           "RESUME_SENSITIVE"]
