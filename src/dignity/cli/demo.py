"""``dignity demo``: a newcomer's first minute, with benign generated images only.

It draws a few synthetic landscapes, puts them in a bank called ``demo``, then matches edited
copies (resized, re-encoded, cropped, rotated, mirrored) and an unrelated image against the
banks, printing what matched and at what distance. Safe to run again: it reuses what is there.
The demo's platform has a name (:data:`DEMO_PLATFORM`, ``DIGNITY_PLATFORM_NAME``), so its pages,
statements of reasons and transparency report say whose they are; ``make run`` serves it so.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from dignity.cli.app import Context, cli, handles_errors, pass_ctx
from dignity.cli.app import console as app_console
from dignity.cli.hashing import hash_file
from dignity.errors import BankNotFound, DignityError
from dignity.matching.banks import NewEntry
from dignity.samples import edited_copies, encode, landscape

DEMO_BANK = "demo"
# The name ``make run`` gives the demo platform (DIGNITY_PLATFORM_NAME); the default setting,
# "this platform", is what an operator who did not name theirs gets.
DEMO_PLATFORM = "Example Pics (demo)"
DEFAULT_PLATFORM = "this platform"


@cli.command("demo")
@pass_ctx
@handles_errors
def demo(ctx: Context) -> None:
    """Create a demo bank from generated benign images and show matches of edited copies."""
    console = app_console()  # no wrapping when piped: the curl line stays whole
    root = Path(ctx.settings.data_dir) / "demo"
    (root / "bank").mkdir(parents=True, exist_ok=True)
    (root / "uploads").mkdir(parents=True, exist_ok=True)
    originals = []
    for seed in range(1, 5):
        path = root / "bank" / f"landscape-{seed}.jpg"
        if not path.exists():
            path.write_bytes(encode(landscape(seed), quality=92))
        originals.append(path)
    uploads: list[Path] = []
    for name, img in edited_copies(landscape(1)).items():
        path = root / "uploads" / f"landscape-1-{name}.jpg"
        if not path.exists():
            path.write_bytes(encode(img, quality=80))
        uploads.append(path)
    unrelated = root / "uploads" / "unrelated.png"
    if not unrelated.exists():
        unrelated.write_bytes(encode(landscape(99), "PNG"))
    uploads.append(unrelated)

    try:
        ctx.banks.get_bank(DEMO_BANK)
    except BankNotFound:
        ctx.banks.create_bank(DEMO_BANK, description="generated benign landscapes (demo)")
    entries = []
    for path in originals:
        h = hash_file(str(path), ctx.settings, dihedral=False)
        entries += [
            NewEntry(sig, val, "file", path.name)
            for sig, val in h.values(ctx.settings.pdq_min_quality)
            if sig in ("pdq", "md5")
        ]
    ctx.banks.add_entries(DEMO_BANK, entries)
    console.print(
        f"Bank [bold]{DEMO_BANK}[/] holds {len(originals)} generated images "
        f"(database: {ctx.settings.resolved_database_url})."
    )

    engine = ctx.engine()
    table = Table(title="Uploads matched against the banks")
    for col in ("upload", "result", "bank", "distance", "how"):
        table.add_column(col)
    for path in uploads:
        h = hash_file(str(path), ctx.settings, dihedral=ctx.settings.match_dihedral)
        outcome = engine.match_image(h, dihedral=ctx.settings.match_dihedral)
        if outcome.matches:
            best = outcome.matches[0]
            table.add_row(
                path.name,
                "[red]MATCH[/]",
                best.bank,
                str(best.distance),
                f"{best.signal} {best.transform}",
            )
        else:
            table.add_row(path.name, "[green]no match[/]", "", "", "")
    console.print(table)
    _demo_key(ctx, root)
    base = f"http://{ctx.settings.host}:{ctx.settings.port}"
    console.print(
        "Try it yourself: [bold]dignity match FILE[/], [bold]dignity bank list[/], "
        "[bold]dignity scan DIR[/].  Files: " + str(root)
    )
    console.print(
        f"An admin API key for this demo is in {root / 'admin.key'}. With the service up:\n"
        f'  curl -H "Authorization: Bearer $(cat {root / "admin.key"})" '
        f"-F file=@{uploads[3]} {base}/v1/scan"
    )
    console.print(
        f"Pages: {base}/portal (victims hash on their device), {base}/takedown (takedown "
        f"requests), {base}/review (reviewers sign in with a reviewer or admin key, e.g. the "
        f"demo key), {base}/transparency (the transparency report)."
    )
    if ctx.settings.platform_name == DEFAULT_PLATFORM:
        console.print(
            "The pages say [bold]this platform[/] until you name yours: "
            f"DIGNITY_PLATFORM_NAME='{DEMO_PLATFORM}' dignity serve"
        )
    else:
        console.print(f"Platform: [bold]{ctx.settings.platform_name}[/] (DIGNITY_PLATFORM_NAME).")
    click.echo()


def _demo_key(ctx: Context, root: Path) -> str:
    """The demo's admin key, made once and kept (owner-readable only) beside the demo files."""
    path = root / "admin.key"
    keys = ctx.services.keys
    if path.exists():
        secret = path.read_text().strip()
        try:
            keys.verify(secret)
            return secret
        except DignityError:
            pass  # revoked, or a different database: make a new one
    _, secret = keys.create("admin", name="demo")
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret
