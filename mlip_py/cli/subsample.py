"""``mlp subsample``: keep every N-th configuration."""
from __future__ import annotations

import itertools

import click

from . import _common


@click.command("subsample", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.argument("n", type=click.IntRange(min=1))
@_common.input_format_option
@_common.output_format_option
@_common.type_map_option
def command(input, output, n, input_format, output_format, type_map):
    """Write the configurations 0, N, 2N, ... of INPUT to OUTPUT."""
    counter = _common.Progress("written", enabled=False)
    cfgs = counter(itertools.islice(_common.open_inputs(input, input_format, type_map), 0, None, n))
    out_fmt = _common.output_format_for(output, output_format)
    if out_fmt in _common.SINGLE_CFG_FORMATS:
        from .convert_cfg import write_single_cfg_files

        write_single_cfg_files(output, cfgs, out_fmt, type_map)
    else:
        _common.write_outputs(output, cfgs, out_fmt, type_map=type_map)
    _common.echo(f"Written {counter.count} configurations")
