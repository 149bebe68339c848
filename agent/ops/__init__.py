"""Operations: doctor checks, systemd notifications, logging set-up, the generated config reference."""
