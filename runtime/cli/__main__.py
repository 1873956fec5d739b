from runtime.cli import main

main(prog_name="llmcrate")
