from slmsql_cli.cli import main

main()
