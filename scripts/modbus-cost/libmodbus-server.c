/* The reference C server of scripts/modbus-cost.sh: libmodbus answering holding
 * registers 0..65535 (register i holds i) to one connection, then exiting, so that
 * callgrind writes its profile on a normal exit. */
#include <modbus.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s IP PORT\n", argv[0]);
        return 2;
    }
    modbus_t *ctx = modbus_new_tcp(argv[1], atoi(argv[2]));
    modbus_mapping_t *map = modbus_mapping_new(0, 0, 65536, 0);
    if (ctx == NULL || map == NULL) {
        fprintf(stderr, "libmodbus: %s\n", modbus_strerror(errno));
        return 1;
    }
    for (int i = 0; i < 65536; i++)
        map->tab_registers[i] = (uint16_t)i;
    int listener = modbus_tcp_listen(ctx, 1);
    if (listener < 0 || modbus_tcp_accept(ctx, &listener) < 0) {
        fprintf(stderr, "libmodbus: %s\n", modbus_strerror(errno));
        return 1;
    }
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    for (;;) {
        int rc = modbus_receive(ctx, query);
        if (rc > 0)
            modbus_reply(ctx, query, rc, map);
        else if (rc == -1)
            break; /* the client closed the connection */
    }
    close(listener);
    modbus_mapping_free(map);
    modbus_free(ctx);
    return 0;
}
