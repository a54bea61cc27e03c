from server.wiring.cli import main

main()
