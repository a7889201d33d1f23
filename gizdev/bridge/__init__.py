"""The bridge: a software GAgent between the MCU's UART, the cloud and local apps on the LAN."""
