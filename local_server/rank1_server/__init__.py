"""rank1_server: the bundled local rank1 server (llama.cpp engine behind an HTTP API)."""
