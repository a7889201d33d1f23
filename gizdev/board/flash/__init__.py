"""Flashing boards: STM32 microcontrollers through their ROM UART bootloader, the ESP8266 WiFi module via esptool."""
