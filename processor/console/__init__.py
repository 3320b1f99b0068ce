"""The QM console: server-rendered pages for the ACD configuration, users and contacts."""
