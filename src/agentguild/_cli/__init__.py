"""The command-line interface's internals; `agentguild.cli` is its public face."""
