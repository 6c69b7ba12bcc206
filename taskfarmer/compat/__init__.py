"""What exists only for PyTaskFarmer's users: its argv (:mod:`.argv`), the co-install check
(:mod:`.coinstall`), and adapters for its runner (:mod:`.runner`) and tasklist handler
(:mod:`.tasklist`) classes."""
