"""Virtual peers for development and tests: a virtual MCU board and an STM32 ROM bootloader."""
