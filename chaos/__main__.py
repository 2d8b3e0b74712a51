from chaos.harness import main

main()
