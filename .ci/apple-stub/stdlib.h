void *malloc(__SIZE_TYPE__); void free(void *); void abort(void);
