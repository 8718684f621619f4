"""Camera geometry: CAHV/CAHVOR/CAHVORE models, YAML cameras, ground planes, rock sizes in metres."""
