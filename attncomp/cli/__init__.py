"""Thin command-line front ends: parse, call the library, print one line on error."""
