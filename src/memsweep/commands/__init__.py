"""What each `memsweep` subcommand does, one module per command (memsweep.cli parses the command line and loads
the module that runs it): train, sweep (launching), plan (`sweep --dry-run`), show_config (`--cfg job`),
show_help (`train|sweep --help`), status, report, evaluate (`memsweep eval`). Each holds `run(args) -> exit
status`. The modules of the commands that only read (plan, show_config, show_help, status) import no torch,
matplotlib, pandas or wandb."""
