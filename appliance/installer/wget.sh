#!/bin/sh
# wget of the installer: busybox wget, with -T SECONDS done by `timeout` instead (busybox 1.35's
# wget crashes with -T, and autoinstall scripts written for GNU wget pass it).
seconds=''
count=$#
while [ "$count" -gt 0 ]; do
    arg=$1
    shift
    count=$((count - 1))
    case $arg in
        -T) seconds=$1; shift; count=$((count - 1)) ;;
        -T*) seconds=${arg#-T} ;;
        --timeout=*) seconds=${arg#--timeout=} ;;
        *) set -- "$@" "$arg" ;;
    esac
done
exec timeout "${seconds:-120}" busybox wget "$@"
