from slmsql_cli.launcher import main

main()
