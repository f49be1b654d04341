"""Moved to diffnb.maint.training and diffnb.fit (issue 16: the maintainers' corner, one fit loop); this
name stays importable for old scripts and trainers."""
from .fit import (  # noqa: F401
    TrainResult,
    augment,
    batches,
    ema_update,
    fit,
    log_loss,
    machine,
    out_of_time,
    prepare,
    resume,
    save_half,
    save_state,
    write_log,
)
from .maint.training import (  # noqa: F401
    AttrTrainConfig,
    DDPMTrainConfig,
    SegTrainConfig,
    ddpm_scheduler,
    ddpm_unet,
    train_attr,
    train_ddpm,
    train_seg,
)

# the old private names, still used by trainers written before the move (e.g. a notebook's own model)
_log_loss, _write_log, _save_half, _save_state, _load_state, _ema_update, _machine = (
    log_loss, write_log, save_half, save_state, resume, ema_update, machine)
