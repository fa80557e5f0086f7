"""`tir train`: train a method on a prepared dataset; writes runs/<name>/ (checkpoints, metrics, curves)."""

from __future__ import annotations

from pathlib import Path

import click

AMP = click.Choice(["auto", "bf16", "fp16", "off"])


def _resumed(config: dict, given: set[str]) -> dict:
    """The saved config of the run to resume, with the changes --resume allows (see tir.training.resume)."""
    from tir.errors import UserError
    from tir.training.checkpoint import LAST, read_checkpoint
    from tir.pipeline.layout import MANIFEST
    from tir.pipeline.store import fingerprint_matches
    from tir.training.engine import dataset_folder, run_dir_of
    from tir.training.resume import resume_config

    last = run_dir_of(config) / LAST
    if not last.exists():
        raise UserError("nothing to resume: no last.pt; start the run without --resume (or pass its --out/--name)", path=last.parent)
    state = read_checkpoint(last, resume=True)
    resumed = resume_config(config, given, state["config"], state["epoch"])
    manifest = dataset_folder(resumed) / MANIFEST
    recorded = state.get("manifest")
    if recorded is not None and manifest.exists() and not fingerprint_matches(recorded, manifest):
        raise UserError("changed since this run started (re-prepared?); --resume would mix two datasets in one run: "
                        "start a new run with another --name", path=manifest)
    return resumed


@click.command()
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="YAML recipe: a file, or the name of a recipe shipped with tir (e.g. hkgr_cuhk-pedes; the "
                   "error for an unknown name lists them). Options below override it.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any config key, value parsed as YAML; repeatable. Example: --set lr=2e-5 "
                   "--set method_options.irra_mask_leak=true. Applied last.")
@click.option("--dataset", default=None, help="CUHK-PEDES, ICFG-PEDES or RSTPReid: reads <manifests>/<DATASET>/.")
@click.option("--manifests", default=None,
              help="Artifact root holding <DATASET>/ [default: data_manifests]; without --dataset, the folder "
                   "holding manifest.parquet itself.")
@click.option("--method", default=None, help="Method to train: clip, irra, hkgr, rde, ccma, ssan, cfack (see README, Training) [default: irra].")
@click.option("--model", default=None, help="open_clip model config: ViT-B-16 (default), or tir-tiny / tir-micro for CPU tests.")
@click.option("--pretrained", default=None,
              help="Local CLIP checkpoint file (e.g. OpenAI ViT-B-16.pt; add --set quick_gelu=true for OpenAI weights). "
                   "A `tir train` checkpoint (runs/<name>/best.pt) also works: its backbone is reused, its heads are not. "
                   "Hub tags are refused: download the file elsewhere and pass its path. Default: random init.")
@click.option("--image-root", default=None,
              help="Folder the manifest's image paths are relative to [default: the --root given to `tir prepare`, /imgs].")
@click.option("--noise", default=None, help="Train with noisy captions: a `tir make-noise` file (noise/<rate>-seed<seed>.parquet, refused "
                   "when made from another manifest) or an RDE .npy noise index (validated against the train split).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs [recipe; default 60].")
@click.option("--batch-size", type=click.IntRange(min=2), default=None, help="Pairs per batch per process [default 64].")
@click.option("--lr", type=float, default=None, help="Base learning rate; new modules use lr x new_module_lr_factor [default 1e-5].")
@click.option("--device", default=None,
              help="auto (CUDA when available), cpu, cuda or cuda:N [default: auto]. Under torchrun pass cuda: "
                   "each process takes the GPU of its LOCAL_RANK.")
@click.option("--amp", type=AMP, default=None,
              help="Mixed precision on CUDA: auto (bf16 where the GPU has it natively, else fp16), bf16, fp16 or off "
                   "(TF32 matmuls); CPU runs fp32. Training, RDE's division pass and evaluation all use it.")
@click.option("--img-aug/--no-img-aug", default=None, help="Add pad-and-crop and random erasing to the horizontal flip.")
@click.option("--workers", "num_workers", type=click.IntRange(min=0), default=None, help="DataLoader worker processes [default 4].")
@click.option("--out", default=None, help="Folder holding run folders [default: runs].")
@click.option("--name", default=None, help="Run folder name [default: <method>-<dataset>].")
@click.option("--seed", type=int, default=None, help="Seed of initialisation, sampling, augmentation and masking [default 1].")
@click.option("--irra-mask-leak", is_flag=True,
              help="irra: let the masked caption also feed SDM and ID, as IRRA's published code does (its numbers "
                   "depend on it); off by default. Same as --set method_options.irra_mask_leak=true.")
@click.option("--rde-eval-mode-train", is_flag=True,
              help="rde: leave the model in eval mode after each epoch's consensus division, as RDE's published "
                   "code does; off by default. Same as --set method_options.rde_eval_mode_train=true.")
@click.option("--pretrained-cnn", type=click.Path(path_type=Path), default=None,
              help="cfack: a local torchvision checkpoint (torch.save(model.state_dict(), path)) of the CNN branch "
                   "chosen by method_options.cnn (resnet50 by default); nothing is downloaded. Default: random "
                   "weights. Same as --set method_options.pretrained_cnn=PATH.")
@click.option("--resume", is_flag=True,
              help="Continue the run <out>/<name> from its last.pt with its saved config; it ends exactly where an "
                   "uninterrupted run would. Only --device and --workers may change, and a larger --epochs "
                   "extends a finished run (the lr schedule is then made for the new length); other changed "
                   "options are refused.")
def train(
    config_file: Path | None,
    overrides: tuple[str, ...],
    irra_mask_leak: bool,
    rde_eval_mode_train: bool,
    pretrained_cnn: Path | None,
    resume: bool,
    **options,
) -> None:
    """Train a text-to-image re-id method on a prepared dataset.

    Reads manifest.parquet (and mask_plans.parquet when present, and --noise), trains with the recipe's
    settings, validates every epoch on val (never on test; for ICFG-PEDES, which has no val split, a seeded
    5% of train identities is held out: --set val_fraction=...), and writes <out>/<name>/: config.yaml,
    last.pt (every epoch, for --resume), best.pt (best val R1), metrics.jsonl and curves.png.
    Under `torchrun --nproc-per-node N -m tir.cli train ...` it trains with DistributedDataParallel.
    """
    from tir.training import config as config_io
    from tir.training.distributed import is_main_process
    from tir.training.engine import train as run_training
    from tir.training.resume import given_keys

    flags = {"irra_mask_leak": irra_mask_leak, "rde_eval_mode_train": rde_eval_mode_train}
    overrides += tuple(f"method_options.{name}=true" for name, given in flags.items() if given)
    config = config_io.resolve(config_file, overrides, options)
    if resume:
        config = _resumed(config, given_keys(config_file, overrides, options))
    if pretrained_cnn is not None:
        config["method_options"]["pretrained_cnn"] = str(pretrained_cnn)
    run_dir = run_training(config, resume=resume)
    if is_main_process():
        click.echo(str(run_dir))
