from polyspeech.cli import main

main()
