"""Thin, typed bindings to Linux netfilter interfaces that the censor needs and
that no installed library offers (NFQUEUE over nfnetlink)."""
