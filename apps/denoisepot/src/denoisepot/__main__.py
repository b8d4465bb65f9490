from denoisepot.cli import main

main()
