from cryptoctl.cli.app import main

main()
