"""`mask-train label`: label collected face crops in a local web page (store.py: the folder and its CSVs;
server.py: the HTTP server; static/: the page, served from the package, no CDN)."""
