"""Virtual peers for development and tests: a virtual MCU board (and, later, an STM32 bootloader)."""
