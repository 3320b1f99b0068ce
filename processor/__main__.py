from processor.entrypoints.cli import main

main()
