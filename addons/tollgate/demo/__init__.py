"""`./run.sh demo`: a stand-in provider and Tollgate configured to use it, on 127.0.0.1."""
