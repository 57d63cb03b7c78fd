from anytune.cli import main

main()
