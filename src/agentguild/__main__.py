"""`python -m agentguild`: the `agentguild` command."""

from .cli import main

if __name__ == "__main__":
    main()
