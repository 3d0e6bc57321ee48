"""What the experiments run, above the library (which never imports them): the benchmark (`bench`,
`ptuning bench`) and the paper-style report (`report`, `ptuning report`)."""
