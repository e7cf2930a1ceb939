from fairseq_eb.diagnose.cli import main

main()
