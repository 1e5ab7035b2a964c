#!/bin/sh
# Runs as the main process under gpubox-init (PID 1).
echo "$GREETING"
echo "running as PID $$ under $(cat /proc/1/comm), in $(pwd)"
echo "files in /app:"
ls -l /app
