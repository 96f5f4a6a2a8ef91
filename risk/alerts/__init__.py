"""Which tracts alert, who hears about which, and the messages that say so."""
